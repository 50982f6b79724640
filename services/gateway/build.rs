//! Builds the web app (`web/`, Svelte and TypeScript through Vite) and compiles it into the
//! gateway: every file of the build becomes a `(path, bytes)` entry of `WEB_ASSETS`, so the
//! binary serves the app with nothing else installed at run time. Building needs Node.js and
//! npm (`make deps`); `npm ci` runs first when `web/node_modules` is missing or older than the
//! lock file. `MAINLOOP_WEB_DIST=<dir>` takes an app built elsewhere instead (a container build
//! with a Node stage, say).

// A build script says what went wrong by panicking.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// What in `web/` the build reads: a change to any of these builds the app again.
const INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "svelte.config.js",
    "tsconfig.json",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo::rerun-if-env-changed=MAINLOOP_WEB_DIST");
    let built = match env::var_os("MAINLOOP_WEB_DIST") {
        Some(dist) => PathBuf::from(dist),
        None => {
            for input in INPUTS {
                println!("cargo::rerun-if-changed={}", web.join(input).display());
            }
            build(&web, &out.join("web"))
        }
    };
    let mut files = Vec::new();
    collect(&built, &built, &mut files);
    files.sort();
    assert!(
        files.iter().any(|(path, _)| path == "/index.html"),
        "the web build in {} has no index.html",
        built.display()
    );
    let mut code = String::from(
        "/// The built web app: each file's path (from `/`) and its bytes.\npub static WEB_ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (path, file) in &files {
        writeln!(code, "    ({path:?}, include_bytes!({:?})),", file.display()).expect("writing to a String");
    }
    code.push_str("];\n");
    fs::write(out.join("web_assets.rs"), code).expect("OUT_DIR is writable");
}

/// Runs `npm ci` when needed, then Vite, into `dist`.
fn build(web: &Path, dist: &Path) -> PathBuf {
    let installed = web.join("node_modules/.package-lock.json");
    if modified(&installed) < modified(&web.join("package-lock.json")) {
        run(
            web,
            "npm",
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
            &[],
        );
    }
    run(
        web,
        "node",
        &["node_modules/vite/bin/vite.js", "build", "--logLevel", "warn"],
        &[("MAINLOOP_WEB_OUT", dist)],
    );
    dist.to_path_buf()
}

fn run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &Path)]) {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`{program} {}` in {} failed ({status})",
            args.join(" "),
            dir.display()
        ),
        Err(err) => panic!(
            "building the web app needs {program} (Node.js 20.19 or newer with npm; `make deps` checks): {err}. \
             Or set MAINLOOP_WEB_DIST to an app already built with `npm run build`."
        ),
    }
}

fn modified(path: &Path) -> std::time::SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            let web_path = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            files.push((web_path, path.canonicalize().expect("a built file")));
        }
    }
}
