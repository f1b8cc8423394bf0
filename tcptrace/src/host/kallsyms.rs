//! Addresses of kernel functions from `/proc/kallsyms` ("address type name
//! [module]"), which root can read on this kernel (kptr_restrict=0). The
//! timewait programs recognise timewait sockets' timers by their callback.

use std::{
    fs,
    io::{self, BufRead, BufReader},
};

/// Finds `names` in kallsyms text: the exact name, or the name with a
/// compiler suffix (`.isra.0`, `.llvm.123`). `None` where absent or hidden
/// (address 0).
pub fn find_symbols<const N: usize>(reader: impl BufRead, names: [&str; N]) -> [Option<u64>; N] {
    let mut found = [None; N];
    for line in reader.lines().map_while(Result::ok) {
        let mut words = line.split_whitespace();
        let (Some(addr), Some(_), Some(symbol)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        for (slot, name) in found.iter_mut().zip(names) {
            let matches = symbol
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
            if slot.is_none() && matches {
                *slot = u64::from_str_radix(addr, 16).ok().filter(|a| *a != 0);
            }
        }
    }
    found
}

/// Addresses of kernel functions, from the running kernel.
pub fn kallsyms<const N: usize>(names: [&str; N]) -> io::Result<[Option<u64>; N]> {
    let file = fs::File::open("/proc/kallsyms")?;
    Ok(find_symbols(BufReader::new(file), names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this kernel's /proc/kallsyms (Linux 6.18).
    const FIXTURE: &str = include_str!("fixtures/kallsyms");

    #[test]
    fn finds_the_timer_callbacks() {
        assert_eq!(
            find_symbols(
                FIXTURE.as_bytes(),
                ["tw_timer_handler", "reqsk_timer_handler"]
            ),
            [Some(0xffffffff82066430), Some(0xffffffff82068970)]
        );
        // `__pfx_` padding symbols and longer names are not the function.
        assert_eq!(find_symbols(FIXTURE.as_bytes(), ["inet_twsk"]), [None]);
    }

    #[test]
    fn suffixes_hidden_addresses_and_modules() {
        let text = "ffffffff82005970 t reqsk_timer_handler.isra.0\n\
                    ffffffff82005980 t reqsk_timer_handler_other\n\
                    0000000000000000 t hidden\n\
                    ffffffffc0001000 t tw_timer_handler_x\t[somemod]\n\
                    garbage\n";
        assert_eq!(
            find_symbols(text.as_bytes(), ["tw_timer_handler", "reqsk_timer_handler"]),
            [None, Some(0xffffffff82005970)]
        );
        assert_eq!(
            find_symbols(text.as_bytes(), ["hidden", "nope"]),
            [None, None]
        );
    }
}
