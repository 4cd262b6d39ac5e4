//! Just enough XDR (RFC 4506) for libvirt's remote protocol: 4-byte big-endian
//! integers, 8-byte hypers, length-prefixed strings and opaques padded to four
//! bytes, and optional values as a boolean followed by the value.

#[derive(Default, Clone)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }
    pub fn opaque_fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(self.buf.len() + (4 - bytes.len() % 4) % 4, 0);
        self
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.opaque_fixed(s.as_bytes())
    }
    pub fn optional_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.u32(1).string(s),
            None => self.u32(0),
        }
    }
}

pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Truncated;

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or(Truncated)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn i32(&mut self) -> Result<i32, Truncated> {
        Ok(self.u32()? as i32)
    }
    pub fn opaque_fixed(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let s = self.take(n)?;
        self.take((4 - n % 4) % 4)?;
        Ok(s)
    }
    pub fn string(&mut self) -> Result<String, Truncated> {
        let n = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.opaque_fixed(n)?).into_owned())
    }
    pub fn optional_string(&mut self) -> Result<Option<String>, Truncated> {
        match self.u32()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_length_prefixed_and_padded_to_four_bytes() {
        let mut e = Encoder::default();
        e.string("abcde").optional_string(None).optional_string(Some("x")).i32(-1);
        assert_eq!(
            e.buf,
            [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'x', 0, 0, 0, 255, 255, 255, 255]
        );
        let mut d = Decoder::new(&e.buf);
        assert_eq!(d.string().unwrap(), "abcde");
        assert_eq!(d.optional_string().unwrap(), None);
        assert_eq!(d.optional_string().unwrap().as_deref(), Some("x"));
        assert_eq!(d.i32().unwrap(), -1);
        assert_eq!(d.u32(), Err(Truncated));
    }

    #[test]
    fn a_length_beyond_the_data_is_truncation_not_a_panic() {
        let mut d = Decoder::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(d.string(), Err(Truncated));
    }
}
