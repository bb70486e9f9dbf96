//! Tar archives of an image as `docker save` and as an OCI image layout, for import tests.

use std::path::Path;

use serde_json::json;

use crate::Result;
use crate::image::Image;

fn append_file(b: &mut tar::Builder<std::fs::File>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(bytes.len() as u64);
    h.set_mtime(crate::image::DEFAULT_MTIME);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, bytes)?;
    Ok(())
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Writes `docker save` format (legacy layout as Docker < 25 writes it: `manifest.json`, `<config-hex>.json`,
/// `<layer-hex>/layer.tar` uncompressed), tagged with `repo_tags` such as `example.com/app:v1`.
pub fn write_docker_save(image: &Image, repo_tags: &[&str], path: &Path) -> Result<()> {
    let mut b = tar::Builder::new(std::fs::File::create(path)?);
    let config_name = format!("{}.json", hex(image.id()));
    append_file(&mut b, &config_name, &image.config.bytes)?;
    let mut layers = vec![];
    for layer in &image.layers {
        let name = format!("{}/layer.tar", hex(&layer.diff_id));
        append_file(&mut b, &name, &layer.tar)?;
        layers.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layers }]);
    append_file(&mut b, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    b.into_inner()?;
    Ok(())
}

/// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) with the manifest annotated
/// `org.opencontainers.image.ref.name = ref_name` (e.g. `example.com/app:v1` or just `v1`).
pub fn write_oci_layout(image: &Image, ref_name: &str, path: &Path) -> Result<()> {
    let mut b = tar::Builder::new(std::fs::File::create(path)?);
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut desc = image.manifest.descriptor();
    desc["annotations"] = json!({ "org.opencontainers.image.ref.name": ref_name });
    let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc] });
    append_file(&mut b, "index.json", &serde_json::to_vec(&index)?)?;
    append_file(
        &mut b,
        &format!("blobs/sha256/{}", hex(image.digest())),
        &image.manifest.bytes,
    )?;
    for (digest, bytes) in image.blobs() {
        append_file(&mut b, &format!("blobs/sha256/{}", hex(&digest)), bytes)?;
    }
    b.into_inner()?;
    Ok(())
}
