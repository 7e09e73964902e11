fn no_discount(code: u64, _note: &str) -> bool {
    code == 0
}

#[tasker::step(max_attempts = 1, skip_if = no_discount)]
fn discount(code: u64, note: &str) -> u64 {
    code + note.len() as u64
}

fn main() {}
