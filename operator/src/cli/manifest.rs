//! Reading an OrderPlatform from a file, with the checks the apiserver would make (the CLI
//! has no apiserver to run the CRD's rules).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::crd::OrderPlatform;

/// The one OrderPlatform in `path` (`-`: standard input).
pub fn load(path: &Path) -> anyhow::Result<OrderPlatform> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("{}: document {} is not YAML", path.display(), index + 1))?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("OrderPlatform") {
            let platform: OrderPlatform = serde_yaml::from_value(value).with_context(|| {
                format!(
                    "{}: document {} is not a valid OrderPlatform",
                    path.display(),
                    index + 1
                )
            })?;
            found.push(platform);
        }
    }
    let platform = match found.len() {
        1 => found.remove(0),
        0 => bail!("{}: no OrderPlatform in the file", path.display()),
        n => bail!(
            "{}: {n} OrderPlatforms in the file; plan and apply take one",
            path.display()
        ),
    };
    crate::provision::desired::validate(&platform.spec)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of its own under the temp dir, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write(text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("platform-{}.yaml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).expect("test fixture");
        TempFile(path)
    }

    #[test]
    fn the_examples_load() {
        for example in ["minimal.yaml", "full.yaml", "local.yaml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(example);
            load(&path).unwrap_or_else(|e| panic!("{example}: {e:#}"));
        }
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let cases = [
            ("apiVersion: v1\nkind: ConfigMap\n", "no OrderPlatform"),
            ("kind: OrderPlatform\nspec: {}\n", "not a valid OrderPlatform"),
            (
                "kind: OrderPlatform\nmetadata: {name: a}\nspec:\n  image: i\n  database: {secretRef: {name: db}}\n  dynamodb: {tablePrefix: 'bad/prefix'}\n  kafka: {bootstrapServers: k, topics: [{name: orders.events}]}\n  auth: {disabled: true}\n",
                "table prefix",
            ),
            (
                "kind: OrderPlatform\nmetadata: {name: a}\nspec:\n  image: i\n  database: {secretRef: {name: db}}\n  dynamodb: {tablePrefix: p}\n  kafka: {bootstrapServers: k, eventsTopic: other, topics: [{name: orders.events}]}\n  auth: {disabled: true}\n",
                "eventsTopic",
            ),
        ];
        for (text, expected) in cases {
            let file = write(text);
            let error = format!("{:#}", load(&file.0).unwrap_err());
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let missing = load(Path::new("/nonexistent/platform.yaml")).unwrap_err();
        assert!(format!("{missing:#}").contains("reading /nonexistent/platform.yaml"));
    }
}
