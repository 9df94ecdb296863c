//! Helpers shared by the real-QEMU tests: tool checks, a tiny HTTP client
//! for the control API, and a launcher process handle.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use novacron_launcher::api::LauncherStatus;
use novacron_launcher::config::{Accel, DiskConfig, DiskFormat, LaunchConfig};

/// Fails (never skips) when a tool the test needs is missing.
pub fn require(tools: &[(&str, &str)]) {
    for (tool, package) in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is required by this test: install the Debian package {package} (hack/test.sh does)"
        );
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free local port (bound then released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub fn http(method: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// One HTTP/1.1 request with a JSON body; returns (status, body).
pub fn http_json(
    method: &str,
    port: u16,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<(u16, String)> {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A VM config for software emulation in `dir`, with a blank qcow2 boot
/// disk (SeaBIOS finds nothing to boot; QEMU still runs and QMP answers).
pub fn vm_config(dir: &Path, name: &str) -> LaunchConfig {
    let disk = dir.join("root.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "64M"],
    );
    let mut c = LaunchConfig::new(
        name,
        "tests",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        1,
        128 << 20,
    );
    c.accel = Accel::Tcg;
    c.run_dir = dir.join("run");
    c.disks.push(DiskConfig {
        name: "root".into(),
        path: disk,
        format: DiskFormat::Qcow2,
        block: false,
        read_only: false,
        boot: true,
        serial: None,
    });
    c.shutdown_timeout_seconds = 2;
    c.termination_message_path = dir.join("termination-log");
    c
}

/// A running launcher process.
pub struct Launcher {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Launcher {
    pub fn start(config: &LaunchConfig, dir: &Path) -> Launcher {
        let port = free_port();
        let path = dir.join("launch.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.join("launcher.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_novacron-launcher"))
            .args([
                "--config",
                path.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the launcher");
        Launcher {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn status(&self) -> Option<LauncherStatus> {
        let (code, body) = http("GET", self.port, "/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).expect("status JSON"))
    }

    /// Polls /status until `pred` holds.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&LauncherStatus) -> bool,
    ) -> LauncherStatus {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(s) = self.status() {
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; last status {last:?}; log:\n{}",
            self.log()
        );
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "launcher did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("launcher.log")).unwrap_or_default()
    }

    /// The termination message as JSON.
    pub fn termination(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("termination-log"))
            .expect("termination message written");
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // Only our own child (QEMU dies with it: kill_on_drop + closed QMP).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 1 MiB raw disk whose boot sector is a tiny guest that honours ACPI:
/// it enables the power-button event (PM1_EN, port 0x602) and ACPI mode
/// (SCI_EN in PM1_CNT, 0x604) at the PM base SeaBIOS programs (0x600), waits
/// for PWRBTN_STS (0x600 bit 8), then enters S5 (SLP_EN|SLP_TYP=0 -> 0x604).
/// No kernel or download needed; hand-assembled 16-bit code.
pub fn acpi_guest_disk(path: &Path) {
    #[rustfmt::skip]
    let code: &[u8] = &[
        0xFA,                                     // cli
        0xBA, 0x02, 0x06, 0xB8, 0x00, 0x01, 0xEF, // mov dx,0x602; mov ax,0x100; out dx,ax
        0xBA, 0x04, 0x06, 0xED, 0x0D, 0x01, 0x00, 0xEF, // mov dx,0x604; in ax,dx; or ax,1; out dx,ax
        0xBA, 0x00, 0x06, 0xED, 0xA9, 0x00, 0x01, 0x74, 0xF7, // wait: in ax,0x600; test ax,0x100; jz wait
        0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, // mov dx,0x604; mov ax,0x2000; out dx,ax (S5)
        0xF4, 0xEB, 0xFD,                         // hlt; jmp hlt
    ];
    boot_disk(path, code);
}

/// A boot sector that powers the machine off at once (S5), like a guest
/// running `poweroff`.
pub fn poweroff_guest_disk(path: &Path) {
    #[rustfmt::skip]
    let code: &[u8] = &[0xFA, 0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xF4, 0xEB, 0xFD];
    boot_disk(path, code);
}

/// A 1 MiB raw disk whose boot sector fills guest RAM from 1 MiB up to
/// `memory_bytes - 1 MiB` with xorshift32 output (incompressible, no zero
/// pages, so a migration has real data to move), prints `F` on the serial
/// port, then idles in `hlt` and prints `.` every 9 timer ticks (~0.5 s):
/// serial output that keeps coming after a migration proves the guest runs
/// on the target. Hand-assembled with GNU as from this source (`.code16`):
///
/// ```text
/// cli; xor ax,ax; mov ds,ax; in al,0x92; or al,2; out 0x92,al   ; A20
/// lgdtl [gdt_desc]; mov eax,cr0; or eax,1; mov cr0,eax
/// ljmpl 0x08:pm                                 ; flat 32-bit code
/// pm: ds=es=ss=0x10; esp=0x7000; edi=0x100000; ecx=[count]; eax=0x9e3779b9
/// fill: xorshift32 eax (<<13, >>17, <<5); stosd; dec ecx; jnz fill
/// dx=0x3f8; out dx,'F'
/// IDT at 0x8000: 256 interrupt gates -> tick; lidt [idt_desc]
/// out 0x21,0xfe; out 0xa1,0xff                  ; only IRQ0 (PIT, vector 8)
/// xor ebx,ebx; sti
/// idle: hlt; inc ebx; cmp ebx,9; jb idle; xor ebx,ebx; out dx,'.'; jmp idle
/// tick: push eax; out 0x20,0x20 (EOI); pop eax; iretd
/// gdt: null, code 0x00cf9a000000ffff, data 0x00cf92000000ffff
/// gdt_desc: 23, gdt; idt_desc: 2047, 0x8000; count: dd 0 (last 4 bytes)
/// ```
pub fn fill_guest_disk(path: &Path, memory_bytes: u64) {
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xe4, 0x92, 0x0c, 0x02, 0xe6, 0x92, 0x66,
        0x0f, 0x01, 0x16, 0xc0, 0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01,
        0x0f, 0x22, 0xc0, 0x66, 0xea, 0x23, 0x7c, 0x00, 0x00, 0x08, 0x00, 0x66,
        0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x70,
        0x00, 0x00, 0xbf, 0x00, 0x00, 0x10, 0x00, 0x8b, 0x0d, 0xcc, 0x7c, 0x00,
        0x00, 0xb8, 0xb9, 0x79, 0x37, 0x9e, 0x89, 0xc3, 0xc1, 0xe3, 0x0d, 0x31,
        0xd8, 0x89, 0xc3, 0xc1, 0xeb, 0x11, 0x31, 0xd8, 0x89, 0xc3, 0xc1, 0xe3,
        0x05, 0x31, 0xd8, 0xab, 0x49, 0x75, 0xe7, 0x66, 0xba, 0xf8, 0x03, 0xb0,
        0x46, 0xee, 0xbf, 0x00, 0x80, 0x00, 0x00, 0xb9, 0x00, 0x01, 0x00, 0x00,
        0xb8, 0x9b, 0x7c, 0x08, 0x00, 0xab, 0xb8, 0x00, 0x8e, 0x00, 0x00, 0xab,
        0x49, 0x75, 0xf1, 0x0f, 0x01, 0x1d, 0xc6, 0x7c, 0x00, 0x00, 0xb0, 0xfe,
        0xe6, 0x21, 0xb0, 0xff, 0xe6, 0xa1, 0x31, 0xdb, 0xfb, 0xf4, 0x43, 0x83,
        0xfb, 0x09, 0x72, 0xf9, 0x31, 0xdb, 0xb0, 0x2e, 0xee, 0xeb, 0xf2, 0x50,
        0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf, 0x8d, 0xb6, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
        0x17, 0x00, 0xa8, 0x7c, 0x00, 0x00, 0xff, 0x07, 0x00, 0x80, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(code.len(), 208);
    let count = (memory_bytes.saturating_sub(2 << 20) / 4) as u32;
    code[204..].copy_from_slice(&count.to_le_bytes());
    boot_disk(path, &code);
}

/// A 1 MiB raw disk whose boot sector rewrites guest RAM from 1 MiB up to
/// `memory_bytes - 1 MiB` with xorshift32 output over and over, printing
/// `.` on the serial port after each pass: a guest that dirties its memory
/// (hundreds of MiB/s under TCG) far faster than a capped link copies it,
/// so pre-copy never converges, and whose heartbeat needs all of its
/// memory. Assembled with GNU as from this source (`.code16`, same entry
/// as [`fill_guest_disk`]):
///
/// ```text
/// cli; A20; lgdtl [gdt_desc]; cr0.PE=1; ljmpl 0x08:pm  ; flat 32-bit code
/// pm: ds=es=ss=0x10; esp=0x7000; eax=0x9e3779b9; dx=0x3f8
/// pass: edi=0x100000; ecx=[count]
/// fill: ebx=eax<<13; eax^=ebx; ebx=eax>>17; eax^=ebx; ebx=eax<<5; eax^=ebx
///       stosd; dec ecx; jnz fill
/// ebx=eax; out dx,'.'; eax=ebx; jmp pass
/// gdt: null, code 0x00cf9a000000ffff, data 0x00cf92000000ffff
/// gdt_desc: 23, gdt; count: dd 0 (last 4 bytes)
/// ```
pub fn dirty_guest_disk(path: &Path, memory_bytes: u64) {
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xe4, 0x92, 0x0c, 0x02, 0xe6, 0x92, 0x66,
        0x0f, 0x01, 0x16, 0x80, 0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01,
        0x0f, 0x22, 0xc0, 0x66, 0xea, 0x23, 0x7c, 0x00, 0x00, 0x08, 0x00, 0x66,
        0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x70,
        0x00, 0x00, 0xb8, 0xb9, 0x79, 0x37, 0x9e, 0x66, 0xba, 0xf8, 0x03, 0xbf,
        0x00, 0x00, 0x10, 0x00, 0x8b, 0x0d, 0x88, 0x7c, 0x00, 0x00, 0x89, 0xc3,
        0xc1, 0xe3, 0x0d, 0x31, 0xd8, 0x89, 0xc3, 0xc1, 0xeb, 0x11, 0x31, 0xd8,
        0x89, 0xc3, 0xc1, 0xe3, 0x05, 0x31, 0xd8, 0xab, 0x49, 0x75, 0xe7, 0x89,
        0xc3, 0xb0, 0x2e, 0xee, 0x89, 0xd8, 0xeb, 0xd3, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0x17, 0x00, 0x68, 0x7c,
        0x00, 0x00, 0x66, 0x90, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(code.len(), 140);
    let count = (memory_bytes.saturating_sub(2 << 20) / 4) as u32;
    code[136..].copy_from_slice(&count.to_le_bytes());
    boot_disk(path, &code);
}

/// Number of `.` the fill guest printed (its heartbeat after the fill).
pub fn guest_heartbeats(serial_log: &Path) -> usize {
    std::fs::read_to_string(serial_log).map_or(0, |s| s.matches('.').count())
}

/// Whether the fill guest has filled its memory (its serial log says `F`).
pub fn guest_filled(serial_log: &Path) -> bool {
    std::fs::read_to_string(serial_log).is_ok_and(|s| s.contains('F'))
}

fn boot_disk(path: &Path, code: &[u8]) {
    let mut disk = vec![0u8; 1 << 20];
    disk[..code.len()].copy_from_slice(code);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    std::fs::write(path, disk).unwrap();
}
