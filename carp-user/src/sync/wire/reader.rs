//! A cursor over an authenticated body: every read is bounds-checked and
//! names the field it wanted when the body ends first.

use super::Malformed;

pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Refuses bytes left over after the last field.
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed::Trailing(self.rest.len()))
        }
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Malformed> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(Malformed::Short(what))?;
        self.rest = rest;
        Ok(*head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        self.array(what).map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_names_the_missing_field() {
        let mut reader = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(reader.u8("a"), Ok(1));
        assert_eq!(reader.u16("b"), Ok(2));
        assert_eq!(reader.u32("c"), Ok(3));
        assert_eq!(reader.finish(), Err(Malformed::Trailing(1)));
        assert_eq!(reader.u16("d"), Err(Malformed::Short("d")));
        // A failed read consumes nothing.
        assert_eq!(reader.u8("e"), Ok(9));
        assert!(reader.is_empty());
        assert_eq!(reader.u64("f"), Err(Malformed::Short("f")));
        assert_eq!(reader.finish(), Ok(()));
    }
}
