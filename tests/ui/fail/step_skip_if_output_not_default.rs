pub struct Receipt {
    pub amount: u32,
}

fn nothing_to_charge(amount: &u32) -> bool {
    *amount == 0
}

#[tasker::step(skip_if = nothing_to_charge)]
fn charge(amount: u32) -> Receipt {
    Receipt { amount }
}

fn main() {}
