//! QEMU's option syntax, where values meet it: `-virtfs`, `-chardev` and
//! `-device` take `key=value` lists split at commas, and a comma inside a
//! value is written twice.

/// `value` for a `key=value` of a QEMU option list.
pub fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_comma_is_doubled() {
        assert_eq!(super::escape("/a,b/c"), "/a,,b/c");
        assert_eq!(super::escape("/plain"), "/plain");
    }
}
