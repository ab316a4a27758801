//! The human forms of resource limits on the command line (`--max-cpu 50%`, `--max-mem 1G`,
//! `--io-write-bps /dev/vda=10M`...) turned into the API's [`Limits`]. Parsing is pure; only
//! [`resolve_device`] looks at the local machine, to turn a device path into its whole disk's
//! `major:minor`. Every refusal is one line naming the flag and the accepted form.

use rrocker_proto::v1::{IoLimit, Limits};

/// The CPU period the CLI asks for, in microseconds: the kernel's default, which is also what
/// a limit without a period means.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The limit flags of `start`, as typed (parsed by [`build`], so that a bad value gets one
/// line naming the flag).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitFlags {
    /// CPU limit: a share of one CPU (50%) or a number of CPUs (1.5).
    #[arg(long, value_name = "CPU")]
    pub max_cpu: Option<String>,
    /// Memory limit, swap excluded: bytes with an optional K/M/G/T suffix (512M, 1G).
    #[arg(long, value_name = "SIZE")]
    pub max_mem: Option<String>,
    /// Most processes and threads the task may have at once.
    #[arg(long, value_name = "N")]
    pub max_pids: Option<String>,
    /// Read bandwidth limit of a disk, e.g. /dev/vda=10M or 254:0=10M (repeatable).
    #[arg(long, value_name = "DEV=RATE")]
    pub io_read_bps: Vec<String>,
    /// Write bandwidth limit of a disk, e.g. /dev/vda=10M or 254:0=10M (repeatable).
    #[arg(long, value_name = "DEV=RATE")]
    pub io_write_bps: Vec<String>,
    /// Read operations per second limit of a disk, e.g. /dev/vda=100 (repeatable).
    #[arg(long, value_name = "DEV=IOPS")]
    pub io_read_iops: Vec<String>,
    /// Write operations per second limit of a disk, e.g. /dev/vda=100 (repeatable).
    #[arg(long, value_name = "DEV=IOPS")]
    pub io_write_iops: Vec<String>,
}

/// Which IO rate a flag sets.
#[derive(Debug, Clone, Copy)]
enum IoField {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

const CPU_FORM: &str = "a share of one CPU like 50%, or a number of CPUs like 1.5";
const SIZE_FORM: &str = "a size in bytes with an optional K, M, G or T suffix, like 512M or 1G";
const COUNT_FORM: &str = "a whole number above zero, like 100";
const DEVICE_FORM: &str =
    "DEVICE=RATE, where DEVICE is a block device path like /dev/vda or MAJOR:MINOR like 254:0";

/// Builds the limits of `flags`; `resolve` turns a device path into `(major, minor)`.
/// `None` when no flag was given.
pub fn build(
    flags: &LimitFlags,
    resolve: impl Fn(&str) -> Result<(u32, u32), String>,
) -> Result<Option<Limits>, String> {
    let mut limits = Limits::default();
    if let Some(text) = &flags.max_cpu {
        limits.cpu_quota_us = parse_cpu(text).map_err(|form| refused("--max-cpu", text, form))?;
        limits.cpu_period_us = CPU_PERIOD_US;
    }
    if let Some(text) = &flags.max_mem {
        limits.memory_max_bytes =
            parse_size(text).map_err(|form| refused("--max-mem", text, form))?;
    }
    if let Some(text) = &flags.max_pids {
        limits.pids_max = parse_count(text).map_err(|form| refused("--max-pids", text, form))?;
    }
    let io_flags = [
        ("--io-read-bps", &flags.io_read_bps, IoField::ReadBps),
        ("--io-write-bps", &flags.io_write_bps, IoField::WriteBps),
        ("--io-read-iops", &flags.io_read_iops, IoField::ReadIops),
        ("--io-write-iops", &flags.io_write_iops, IoField::WriteIops),
    ];
    for (flag, values, field) in io_flags {
        for text in values {
            let (device, rate) =
                text.split_once('=').ok_or_else(|| refused(flag, text, DEVICE_FORM))?;
            let (major, minor) = match parse_major_minor(device) {
                Some(numbers) => numbers,
                None if device.starts_with('/') => {
                    resolve(device).map_err(|reason| format!("{flag}: {reason}"))?
                }
                None => return Err(refused(flag, text, DEVICE_FORM)),
            };
            let value = match field {
                IoField::ReadBps | IoField::WriteBps => parse_size(rate),
                IoField::ReadIops | IoField::WriteIops => parse_count(rate),
            }
            .map_err(|form| refused(flag, text, &format!("DEVICE=RATE with RATE {form}")))?;
            let rule = match limits.io.iter_mut().find(|r| (r.major, r.minor) == (major, minor)) {
                Some(rule) => rule,
                None => {
                    limits.io.push(IoLimit { major, minor, ..IoLimit::default() });
                    limits.io.last_mut().expect("just pushed")
                }
            };
            let slot = match field {
                IoField::ReadBps => &mut rule.read_bps,
                IoField::WriteBps => &mut rule.write_bps,
                IoField::ReadIops => &mut rule.read_iops,
                IoField::WriteIops => &mut rule.write_iops,
            };
            if *slot != 0 {
                return Err(format!("{flag}: {major}:{minor} is given twice"));
            }
            *slot = value;
        }
    }
    Ok((limits != Limits::default()).then_some(limits))
}

fn refused(flag: &str, text: &str, form: &str) -> String {
    format!("{flag}: invalid value '{text}': expected {form}")
}

/// `50%` (of one CPU) or `1.5` (CPUs) as a quota per [`CPU_PERIOD_US`].
pub fn parse_cpu(text: &str) -> Result<u64, &'static str> {
    let (number, per_cpu) = match text.strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (text, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| CPU_FORM)?;
    if !value.is_finite() || value <= 0.0 {
        return Err(CPU_FORM);
    }
    let quota = (value / per_cpu * CPU_PERIOD_US as f64).round();
    // Below 1% of a CPU the kernel refuses the quota; far above any machine is a typo.
    if !(1_000.0..=1e12).contains(&quota) {
        return Err(CPU_FORM);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(quota as u64) // In range, checked just above.
}

/// Bytes with an optional binary suffix: `4096`, `512K`, `512M`, `1G`, `1.5G`, `2T` (also
/// `Ki`/`KiB`/`KB` forms, any case).
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(SIZE_FORM),
    };
    if unit == "b" && shift != 0 {
        return Err(SIZE_FORM);
    }
    let value: f64 = number.parse().map_err(|_| SIZE_FORM)?;
    #[allow(clippy::cast_precision_loss)] // A power of two up to 2^40 is exact in an f64.
    let bytes = (value * (1u64 << shift) as f64).floor();
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(SIZE_FORM);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64) // In range, checked just above.
}

/// A whole number above zero.
pub fn parse_count(text: &str) -> Result<u64, &'static str> {
    match text.trim().parse::<u64>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(COUNT_FORM),
    }
}

/// `MAJOR:MINOR`.
fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The whole disk's `major:minor` of the local block device at `path` (a partition gives its
/// disk: cgroups throttle whole disks).
pub fn resolve_device(path: &str) -> Result<(u32, u32), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("cannot use device {path}: {error}"))?;
    if !metadata.file_type().is_block_device() {
        return Err(format!("{path} is not a block device"));
    }
    whole_disk(metadata.rdev()).ok_or_else(|| format!("cannot find the disk of {path}"))
}

/// The whole disk's `major:minor` of the block device holding the file system of `path`.
pub fn resolve_device_of(path: &std::path::Path) -> Result<(u32, u32), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("cannot use {}: {error}", path.display()))?;
    whole_disk(metadata.dev()).ok_or_else(|| format!("{} is not on a block device", path.display()))
}

/// The whole disk of device number `dev` (itself, or the disk of a partition), if it is a
/// block device of this machine.
fn whole_disk(dev: u64) -> Option<(u32, u32)> {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if sys.join("partition").exists() {
        let disk = std::fs::read_to_string(sys.join("../dev")).ok()?;
        return parse_major_minor(disk.trim());
    }
    sys.exists().then_some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_devices(path: &str) -> Result<(u32, u32), String> {
        Err(format!("no device {path} in tests"))
    }

    fn flags(edit: impl FnOnce(&mut LimitFlags)) -> LimitFlags {
        let mut flags = LimitFlags::default();
        edit(&mut flags);
        flags
    }

    #[test]
    fn the_seed_forms() {
        let limits = build(
            &flags(|f| {
                f.max_cpu = Some("50%".into());
                f.max_mem = Some("1G".into());
            }),
            no_devices,
        )
        .expect("ok")
        .expect("some");
        assert_eq!((limits.cpu_quota_us, limits.cpu_period_us), (50_000, 100_000));
        assert_eq!(limits.memory_max_bytes, 1 << 30);
        assert_eq!(build(&LimitFlags::default(), no_devices), Ok(None));
    }

    #[test]
    fn human_numbers() {
        assert_eq!(parse_cpu("1.5"), Ok(150_000));
        assert_eq!(parse_cpu("20%"), Ok(20_000));
        assert_eq!(parse_cpu("2"), Ok(200_000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_count("100"), Ok(100));
    }

    #[test]
    fn io_rules_merge_per_device_and_resolve_paths() {
        let limits = build(
            &flags(|f| {
                f.io_write_bps = vec!["/dev/vda=10M".into()];
                f.io_read_iops = vec!["254:0=100".into()];
                f.io_read_bps = vec!["8:0=1K".into()];
            }),
            |path| if path == "/dev/vda" { Ok((254, 0)) } else { no_devices(path) },
        )
        .expect("ok")
        .expect("some");
        assert_eq!(limits.io.len(), 2);
        let vda = limits.io.iter().find(|r| r.major == 254).expect("vda");
        assert_eq!((vda.write_bps, vda.read_iops, vda.read_bps), (10 << 20, 100, 0));
    }

    #[test]
    fn bad_values_get_one_line_naming_the_flag_and_the_form() {
        let cases: Vec<(LimitFlags, &str)> = vec![
            (flags(|f| f.max_cpu = Some("0%".into())), "--max-cpu"),
            (flags(|f| f.max_cpu = Some("-1".into())), "--max-cpu"),
            (flags(|f| f.max_cpu = Some("abc".into())), "--max-cpu"),
            (flags(|f| f.max_cpu = Some("0.001".into())), "--max-cpu"),
            (flags(|f| f.max_cpu = Some("1e30".into())), "--max-cpu"),
            (flags(|f| f.max_cpu = Some("NaN".into())), "--max-cpu"),
            (flags(|f| f.max_mem = Some("0".into())), "--max-mem"),
            (flags(|f| f.max_mem = Some("-5M".into())), "--max-mem"),
            (flags(|f| f.max_mem = Some("12Q".into())), "--max-mem"),
            (flags(|f| f.max_mem = Some("99999999999T".into())), "--max-mem"),
            (flags(|f| f.max_mem = Some("".into())), "--max-mem"),
            (flags(|f| f.max_pids = Some("0".into())), "--max-pids"),
            (flags(|f| f.max_pids = Some("ten".into())), "--max-pids"),
            (flags(|f| f.max_pids = Some("99999999999999999999999".into())), "--max-pids"),
            (flags(|f| f.io_write_bps = vec!["10M".into()]), "--io-write-bps"),
            (flags(|f| f.io_write_bps = vec!["vda=10M".into()]), "--io-write-bps"),
            (flags(|f| f.io_write_bps = vec!["/dev/nope=10M".into()]), "--io-write-bps"),
            (flags(|f| f.io_read_bps = vec!["8:0=fast".into()]), "--io-read-bps"),
            (flags(|f| f.io_read_iops = vec!["8:0=0".into()]), "--io-read-iops"),
            (flags(|f| f.io_write_iops = vec!["8:0=1".into(), "8:0=2".into()]), "--io-write-iops"),
        ];
        for (bad, flag) in cases {
            let error = build(&bad, no_devices).expect_err("refused");
            assert!(error.starts_with(&format!("{flag}: ")), "{bad:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
