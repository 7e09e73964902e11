pub struct Receipt {
    pub amount: u32,
}

fn nothing_to_charge(amount: &u32) -> bool {
    *amount == 0
}

#[tasker::step(skip_if = nothing_to_charge)]
async fn charge(amount: u32) -> Result<Receipt, std::io::Error> {
    Ok(Receipt { amount })
}

fn main() {}
