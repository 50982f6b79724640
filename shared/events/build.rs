//! Generates the mainloop.v1 types (prost), their canonical protobuf-JSON serde impls (pbjson),
//! and the table that names each envelope payload, from the `.proto` files under `/proto`.
//! protoc comes from `PROTOC` or the `PATH` (Debian: `apt-get install protobuf-compiler`).

use std::{env, fs, path::PathBuf};

const PROTO_ROOT: &str = "../../proto";
const FILES: &[&str] = &[
    "mainloop/v1/envelope.proto",
    "mainloop/v1/task.proto",
    "mainloop/v1/job.proto",
    "mainloop/v1/github.proto",
    "mainloop/v1/chat.proto",
    "mainloop/v1/inbox.proto",
    "mainloop/v1/commands.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptor.bin");
    let protos: Vec<String> = FILES.iter().map(|f| format!("{PROTO_ROOT}/{f}")).collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&protos, &[PROTO_ROOT])?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".mainloop"])?;

    let envelope = fs::read_to_string(format!("{PROTO_ROOT}/mainloop/v1/envelope.proto"))?;
    fs::write(out_dir.join("event_types.rs"), event_type_table(&envelope)?)?;
    Ok(())
}

/// Reads the `oneof payload` block of envelope.proto and writes `Payload::type_name` and the
/// list of all event types, so the type string can never disagree with the payload.
fn event_type_table(envelope: &str) -> Result<String, String> {
    let start = envelope
        .find("oneof payload {")
        .ok_or("envelope.proto has no `oneof payload`")?;
    let mut cases = Vec::new();
    for line in envelope[start..].lines().skip(1) {
        let line = line.trim();
        if line.starts_with('}') {
            break;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(message), Some(field)) = (words.next(), words.next()) else {
            return Err(format!("cannot read oneof line `{line}`"));
        };
        cases.push((message.to_string(), upper_camel(field)));
    }
    let arms: String = cases
        .iter()
        .map(|(message, variant)| format!("            Payload::{variant}(_) => \"{message}\",\n"))
        .collect();
    let names: String = cases
        .iter()
        .map(|(message, _)| format!("    \"{message}\",\n"))
        .collect();
    Ok(format!(
        "impl envelope::Payload {{\n    /// The payload's message name, which is the envelope's `type`.\n    \
         pub fn type_name(&self) -> &'static str {{\n        use envelope::Payload;\n        \
         match self {{\n{arms}        }}\n    }}\n}}\n\n\
         /// Every event type an envelope can carry, in schema order.\n\
         pub const ALL_EVENT_TYPES: &[&str] = &[\n{names}];\n"
    ))
}

/// prost's variant naming: snake_case field → UpperCamelCase.
fn upper_camel(field: &str) -> String {
    field
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
