//! A minimal initramfs for Linux boot tests: an uncompressed "newc" cpio archive (the format
//! the kernel unpacks, Documentation/driver-api/early-userspace/buffer-format.rst) holding a
//! static busybox, `/dev/console` and an `/init` script, built in memory so the tests need no
//! cpio tool.

/// One archive member.
enum Member<'a> {
    Dir,
    File { mode: u32, data: &'a [u8] },
    CharDev { major: u32, minor: u32 },
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn append(out: &mut Vec<u8>, ino: u32, name: &str, member: &Member) {
    let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match member {
        Member::Dir => (S_IFDIR | 0o755, &[], (0, 0)),
        Member::File { mode, data } => (S_IFREG | mode, data, (0, 0)),
        Member::CharDev { major, minor } => (S_IFCHR | 0o600, &[], (*major, *minor)),
    };
    let nlink = if matches!(member, Member::Dir) { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// An initramfs whose `/init` runs `script` (a busybox `sh` script) with `busybox` installed
/// at `/bin/busybox`.
pub fn busybox_initramfs(busybox: &[u8], script: &str) -> Vec<u8> {
    let init = format!("#!/bin/busybox sh\n{script}");
    let members = [
        ("bin", Member::Dir),
        ("dev", Member::Dir),
        ("proc", Member::Dir),
        ("sys", Member::Dir),
        ("dev/console", Member::CharDev { major: 5, minor: 1 }),
        (
            "bin/busybox",
            Member::File {
                mode: 0o755,
                data: busybox,
            },
        ),
        (
            "init",
            Member::File {
                mode: 0o755,
                data: init.as_bytes(),
            },
        ),
    ];
    let mut out = Vec::new();
    for (i, (name, m)) in members.iter().enumerate() {
        append(&mut out, i as u32 + 1, name, m);
    }
    append(&mut out, 0, "TRAILER!!!", &Member::Dir);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = busybox_initramfs(b"BB", "echo hi\n");
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // The first member is "bin": name size 4, right after the 110-byte header.
        assert_eq!(&a[94..102], b"00000004");
        assert_eq!(&a[110..114], b"bin\0");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("#!/bin/busybox sh\necho hi\n"));
        assert!(text.contains("TRAILER!!!"));
    }
}
