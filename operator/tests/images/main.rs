//! The OCI archives `scripts/images.sh` builds (`make test` builds them first) against the
//! Dockerfile's runtime stages: the same user, entrypoint, command and exposed port, and every
//! file the binary needs to start (its ELF interpreter and shared libraries, the CA bundle, the
//! `nonroot` user, a writable `/tmp`); all of them, the development stack's included (`dev`),
//! run as containers in a containerd of the test's own.

mod dev;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn images_dir() -> PathBuf {
    std::env::var_os("ORDER_PLATFORM_IMAGES")
        .map(PathBuf::from)
        .expect(
            "ORDER_PLATFORM_IMAGES is not set: run `make test` (it runs scripts/images.sh build)",
        )
}

/// A path as a command argument (the test's own temporary paths are UTF-8).
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the Dockerfile says of the stage `target` (and of the runtime stage it builds on).
#[derive(Debug, Default, PartialEq)]
struct Runtime {
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    ports: BTreeSet<String>,
}

fn dockerfile(target: &str) -> Runtime {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"))
        .expect("read the Dockerfile");
    let mut runtime = Runtime::default();
    let mut stage = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            stage = from.rsplit(' ').next().unwrap_or_default().to_owned();
            continue;
        }
        if stage != "runtime" && stage != target {
            continue;
        }
        let json =
            |rest: &str| -> Vec<String> { serde_json::from_str(rest).expect("an exec-form list") };
        if let Some(user) = line.strip_prefix("USER ") {
            runtime.user = user.to_owned();
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            runtime.entrypoint = json(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            runtime.cmd = json(rest);
        } else if let Some(port) = line.strip_prefix("EXPOSE ") {
            runtime.ports.insert(format!("{port}/tcp"));
        }
    }
    runtime
}

/// An unpacked archive: its image config, and its layers' files under `<dir>/rootfs`.
struct Image {
    config: Value,
    dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn unpack(name: &str) -> Image {
    let archive = images_dir().join(format!("{name}.oci.tar"));
    assert!(
        archive.exists(),
        "{} missing: scripts/images.sh build",
        archive.display()
    );
    let dir = std::env::temp_dir().join(format!("image-{name}-{}", uuid::Uuid::new_v4().simple()));
    let guard = tempdir::Dir(dir.clone());
    let layout = dir.join("layout");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&layout).expect("layout dir");
    std::fs::create_dir_all(&rootfs).expect("rootfs dir");
    run("tar", &["-xf", arg(&archive), "-C", arg(&layout)]);
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read = |path: PathBuf| -> Value {
        serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .expect("JSON")
    };
    let index = read(layout.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        format!("localhost/{name}:{}", env!("CARGO_PKG_VERSION")),
        "the name containerd imports it as"
    );
    let digest = |v: &Value| v.as_str().expect("a digest").to_owned();
    let manifest = read(blob(&digest(&entry["digest"])));
    let config = read(blob(&digest(&manifest["config"]["digest"])));
    for layer in manifest["layers"].as_array().expect("layers") {
        let path = blob(&digest(&layer["digest"]));
        run("tar", &["-xzf", arg(&path), "-C", arg(&rootfs)]);
    }
    Image { config, dir: guard }
}

impl Image {
    fn path(&self, inside: &str) -> PathBuf {
        self.dir
            .0
            .join("rootfs")
            .join(inside.trim_start_matches('/'))
    }
}

/// The shared libraries a binary needs (`ldd` on this machine, which builds it).
fn needed_libraries(binary: &Path) -> Vec<String> {
    run("ldd", &[arg(binary)])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.contains(".so") && !name.starts_with("linux-vdso"))
        .filter_map(|name| {
            Path::new(name)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .collect()
}

fn lib_exists(image: &Image, soname: &str) -> bool {
    [
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "lib64",
        "lib",
        "usr/lib",
    ]
    .iter()
    .any(|dir| image.path(dir).join(soname).exists())
}

fn check(name: &str) {
    let image = unpack(name);
    let config = &image.config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let built = Runtime {
        user: config["User"].as_str().unwrap_or_default().to_owned(),
        entrypoint: strings(&config["Entrypoint"]),
        cmd: strings(&config["Cmd"]),
        ports: config["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    };
    assert_eq!(
        built,
        dockerfile(name),
        "{name}: the image config and the Dockerfile agree"
    );

    let binary = image.path(&built.entrypoint[0]);
    assert!(
        binary.exists(),
        "{name}: {} in the image",
        built.entrypoint[0]
    );
    for soname in needed_libraries(&binary) {
        assert!(
            lib_exists(&image, &soname),
            "{name}: {soname} missing from the image"
        );
    }
    assert!(
        image.path("lib64/ld-linux-x86-64.so.2").exists(),
        "{name}: the ELF interpreter"
    );
    let passwd = std::fs::read_to_string(image.path("etc/passwd")).expect("/etc/passwd");
    assert!(passwd.contains("nonroot:x:65532:65532"), "{passwd}");
    let bundle = std::fs::read_to_string(image.path("etc/ssl/certs/ca-certificates.crt"))
        .expect("the CA bundle");
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 100,
        "{name}: a CA bundle"
    );
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::fs::metadata(image.path("tmp"))
        .expect("/tmp")
        .permissions()
        .mode();
    assert_eq!(tmp & 0o7777, 0o1777, "{name}: a writable /tmp");
    for absent in ["bin/sh", "usr/bin/apt", "usr/bin/dpkg"] {
        assert!(!image.path(absent).exists(), "{name}: no {absent}");
    }
    // It starts: the binary runs on the image's own libraries and answers --version.
    let loader = image.path("lib64/ld-linux-x86-64.so.2");
    let libs = format!(
        "{}:{}",
        image.path("lib/x86_64-linux-gnu").display(),
        image.path("usr/lib/x86_64-linux-gnu").display()
    );
    let out = run(
        arg(&loader),
        &[
            "--inhibit-cache",
            "--library-path",
            &libs,
            arg(&binary),
            "--version",
        ],
    );
    assert!(out.contains(name), "{name} --version: {out}");
}

#[test]
fn the_service_image_matches_the_dockerfile_and_has_what_its_binary_needs() {
    check("order-service");
}

#[test]
fn the_operator_image_matches_the_dockerfile_and_has_what_its_binary_needs() {
    check("order-operator");
}

/// A containerd of the test's own (its root, state and socket in a temporary directory), built
/// by `scripts/k8s-tools.sh build node`, running containers with Debian's runc.
struct Containerd {
    bin: PathBuf,
    dir: tempdir::Dir,
    process: std::process::Child,
}

impl Containerd {
    fn start() -> Self {
        let bin = std::env::var_os("ORDER_PLATFORM_NODE_BIN")
            .map(PathBuf::from)
            .expect("ORDER_PLATFORM_NODE_BIN is not set: run `make test` (scripts/k8s-tools.sh build node)");
        let dir =
            std::env::temp_dir().join(format!("containerd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("containerd dir");
        let config = format!(
            "version = 3\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("config.toml");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let process = Command::new(bin.join("containerd"))
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (root is needed)");
        let containerd = Self {
            bin,
            dir: tempdir::Dir(dir),
            process,
        };
        // The tests' containerds start at once on two cores, beside a full build: a bound
        // with room (it once took over 30 s under CI's load), and its log when it is exceeded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !containerd.ctr_ok(&["version"]) {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not answer in 90 s; its log:\n{}",
                std::fs::read_to_string(containerd.dir.0.join("containerd.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        containerd
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join("ctr"));
        command
            .arg("--address")
            .arg(self.dir.0.join("containerd.sock"))
            .args(args);
        command
    }

    fn ctr_ok(&self, args: &[&str]) -> bool {
        self.ctr_command(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = self.ctr_command(args).output().expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn both_images_run_as_non_root_containers_under_runc() {
    let containerd = Containerd::start();
    for name in ["order-service", "order-operator"] {
        let archive = images_dir().join(format!("{name}.oci.tar"));
        containerd.ctr(&["images", "import", arg(&archive)]);
        let reference = format!("localhost/{name}:{}", env!("CARGO_PKG_VERSION"));
        let id = format!("{name}-version");
        // The image's own entrypoint and user; a memory limit, so real cgroups are in play.
        containerd.ctr(&[
            "containers",
            "create",
            "--runc-binary",
            "/usr/sbin/runc",
            "--memory-limit",
            "134217728",
            &reference,
            &id,
            &format!("/usr/local/bin/{name}"),
            "--version",
        ]);
        let info: Value = serde_json::from_str(&containerd.ctr(&["containers", "info", &id]))
            .expect("container info");
        assert_eq!(
            info["Spec"]["process"]["user"]["uid"], 65532,
            "{name}: nonroot"
        );
        let out = containerd.ctr(&["tasks", "start", &id]);
        assert!(
            out.contains(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{name} in a container: {out}"
        );
        containerd.ctr(&["containers", "rm", &id]);
    }
}

/// The status `ctr tasks ls` shows for `id` (RUNNING, STOPPED, …).
fn task_status(containerd: &Containerd, id: &str) -> Option<String> {
    containerd
        .ctr(&["tasks", "ls"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

#[test]
fn the_pause_image_built_from_source_holds_a_sandbox_and_stops_on_sigterm() {
    let containerd = Containerd::start();
    let archive = images_dir().join("pause.oci.tar");
    containerd.ctr(&["images", "import", arg(&archive)]);
    let id = "pause-sandbox";
    containerd.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        "/usr/sbin/runc",
        "localhost/pause:3.10.1",
        id,
    ]);
    let info: Value =
        serde_json::from_str(&containerd.ctr(&["containers", "info", id])).expect("container info");
    assert_eq!(
        info["Spec"]["process"]["user"]["uid"], 65535,
        "upstream's user"
    );
    assert_eq!(task_status(&containerd, id).as_deref(), Some("RUNNING"));
    containerd.ctr(&["tasks", "kill", "-s", "SIGTERM", id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while task_status(&containerd, id).as_deref() != Some("STOPPED") {
        assert!(
            std::time::Instant::now() < deadline,
            "pause did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    containerd.ctr(&["tasks", "delete", id]);
    containerd.ctr(&["containers", "rm", id]);
}
