pub struct Cart {
    pub total: u32,
}

impl Cart {
    #[tasker::step(max_attempts = 2)]
    fn checkout(self) -> Result<u32, std::io::Error> {
        Ok(self.total)
    }
}

fn main() {}
