//! Resident memory of a process, `VmRSS` from `/proc/{pid}/status` (KiB).

/// The server's RSS in KiB.
pub fn of_pid(pid: u32) -> Result<u64, String> {
    read(&format!("/proc/{pid}/status"))
}

/// hubload's own RSS in KiB.
pub fn own() -> Option<u64> {
    read("/proc/self/status").ok()
}

fn read(path: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    parse(&status).ok_or_else(|| format!("no VmRSS line in {path}"))
}

fn parse(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vmrss() {
        let status = "Name:\tlockstep\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(super::parse(status), Some(12345));
        assert_eq!(super::parse("Name:\tx\n"), None);
    }
}
