//! WebSocket masking keys (RFC 6455 5.3: unpredictable to the server, from a strong source of entropy): read from
//! the operating system's random source in blocks, so a frame costs no system call.

const BLOCK: usize = 256;

#[derive(Debug)]
pub struct Masks {
    block: [u8; BLOCK],
    used: usize,
}

impl Default for Masks {
    fn default() -> Self {
        Masks {
            block: [0; BLOCK],
            used: BLOCK,
        }
    }
}

impl Masks {
    pub fn next(&mut self) -> [u8; 4] {
        if self.used + 4 > BLOCK {
            getrandom::getrandom(&mut self.block)
                .expect("the operating system's random source failed");
            self.used = 0;
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&self.block[self.used..self.used + 4]);
        self.used += 4;
        mask
    }
}
