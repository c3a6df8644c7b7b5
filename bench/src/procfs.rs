//! Readings from /proc (Linux): a process's memory and CPU time, which CPUs it may run
//! on, and every core's busy time.

use std::io;
use std::time::Duration;

/// Resident set size of `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let read = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
    };
    read().map_err(|e: io::Error| format!("cannot read /proc/{pid}/status: {e}"))
}

/// User + system CPU time of process `pid` (all threads), from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing paren.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the full line (utime, stime) are 12 and 13 here (state is 3 -> 1).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// One core's jiffies since boot, from a `cpuN` line of /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreJiffies {
    /// Not idle (user, nice, system, irq, softirq and steal).
    pub busy: u64,
    /// Everything counted for the core.
    pub total: u64,
    /// Running processes (user + nice + system), as opposed to interrupts.
    pub task: u64,
    /// Stolen: the core wanted to run but the VM's host ran something else. On a shared
    /// VM this is what makes a measurement slow without any process here being busy.
    pub steal: u64,
}

/// Every core's jiffies (`cpu0`, `cpu1`, ...), from /proc/stat.
pub fn core_jiffies() -> Vec<CoreJiffies> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait are not busy; irq and softirq (loopback TCP work) are.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            CoreJiffies {
                busy: total - idle,
                total,
                task: v.iter().take(3).sum(),
                steal: v.get(7).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// The CPUs process `pid` may run on (from `Cpus_allowed_list`, e.g. "1" or "0-1,3").
pub fn allowed_cpus(pid: u32) -> Vec<usize> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let mut ends = part
            .split('-')
            .filter_map(|x| x.trim().parse::<usize>().ok());
        if let Some(a) = ends.next() {
            let b = ends.next().unwrap_or(a);
            cpus.extend(a..=b);
        }
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_proc() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("rss") > 0);
        assert!(cpu_time(pid).is_some());
        assert!(!allowed_cpus(pid).is_empty());
    }
}
