//! Settings for the allocator the binaries ship with (mimalloc).
//!
//! mimalloc reads its options from the environment once, when the process
//! starts, and the workspace forbids the `unsafe` its setter would need. So
//! a binary that wants other defaults runs itself again, at once, with them
//! in its environment ([`apply`]); a value the operator set is left alone.
//!
//! The one setting: `MIMALLOC_PURGE_DELAY=-1`, freed memory is kept for
//! reuse rather than handed back to the system 10 ms later. The engine frees
//! a whole batch of records (up to 100,000) after each transaction; with
//! the default it took them again as fresh pages the kernel had to zero,
//! a quarter of its time (`perf`), and its apply rate was 0.6–0.8 of what
//! it is with the memory kept (BENCHMARKS.md, P3). The cost: the process
//! keeps its high-water mark, as a JVM keeps its heap.

use std::ffi::OsString;

/// The environment the binaries want, as (variable, value).
pub const DEFAULTS: &[(&str, &str)] = &[("MIMALLOC_PURGE_DELAY", "-1")];

/// The variables of [`DEFAULTS`] that `env` leaves unset.
fn missing(env: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, &'static str)> {
    DEFAULTS
        .iter()
        .copied()
        .filter(|(name, _)| env(name).is_none())
        .collect()
}

/// Runs this program again in place (same process id, arguments and
/// environment) with [`DEFAULTS`] added, when any of them is unset. Call it
/// first thing in `main`. Returns only when nothing was missing or the
/// program could not be run again (then it goes on with mimalloc's own
/// defaults, and says so on stderr).
pub fn apply() {
    use std::os::unix::process::CommandExt;
    let missing = missing(|name| std::env::var_os(name));
    if missing.is_empty() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("allocator settings not applied: cannot find this program: {e}");
            return;
        }
    };
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    let e = command.args(args).envs(missing).exec();
    eprintln!("allocator settings not applied: cannot run this program again: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_operator_left_unset_is_added() {
        assert_eq!(missing(|_| None), DEFAULTS.to_vec());
        assert!(missing(|_| Some(OsString::from("0"))).is_empty());
    }
}
