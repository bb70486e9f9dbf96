//! Test fixtures shared by every Berth crate's tests. No dependency on any berth crate.
//!
//! * [`Registry`] runs Debian's real `docker-registry` on a loopback port (optionally behind htpasswd), with helpers
//!   to damage a stored blob for negative tests.
//! * [`LayerBuilder`] / [`ImageBuilder`] / [`IndexBuilder`] build real OCI or Docker schema-2 images in memory:
//!   tar layers from file trees (including hostile raw entries), gzip / zstd / uncompressed, configs, manifests and
//!   indexes. [`busybox`] builds a small runnable image from the host's `/bin/busybox`.
//! * [`Pusher`] uploads images and indexes over the distribution API; [`archive`] writes `docker save` and OCI-layout
//!   tar files of an image for import tests.
//! * [`FakeRegistry`] is a small in-process registry for what the real one cannot easily do: bearer-token auth,
//!   throttled blobs (to interrupt a pull), and a request log.
//!
//! ```no_run
//! use berth_testkit::{Registry, Pusher, busybox};
//! let reg = Registry::start().unwrap();
//! let img = busybox();
//! Pusher::new(&reg).push_image("library/busybox", "latest", &img).unwrap();
//! let reference = format!("{}/library/busybox:latest", reg.host());
//! ```

pub mod archive;
pub mod cleanup;
mod fake;
mod image;
mod push;
mod registry;

pub use fake::{FAKE_TOKEN, FakeAuth, FakeRegistry};
pub use image::{
    Blob, Compression, Format, Image, ImageBuilder, Index, IndexBuilder, LayerBuilder, RawEntry,
    busybox, busybox_base_layers, sha256_digest,
};
pub use push::Pusher;
pub use registry::Registry;

/// Any failure in a fixture: tests just `unwrap()` or `?` it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_fetch_busybox() {
        let reg = Registry::start().unwrap();
        let img = busybox();
        assert!(img.layers.len() >= 2);
        let p = Pusher::new(&reg);
        let digest = p.push_image("library/busybox", "latest", &img).unwrap();
        let body = ureq::get(&format!(
            "{}/v2/library/busybox/manifests/latest",
            reg.url()
        ))
        .set("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
        assert_eq!(sha256_digest(body.as_bytes()), digest);
        assert!(reg.blob_path(img.layers[0].digest.as_str()).exists());
    }

    #[test]
    fn push_index_docker_and_zstd_and_hostile() {
        let reg = Registry::start().unwrap();
        let l = LayerBuilder::new()
            .file("a", "x")
            .raw(RawEntry::file("../escape", b"boom"))
            .raw(RawEntry::symlink("/abs", "/etc"))
            .build(Compression::Zstd)
            .unwrap();
        let amd = ImageBuilder::new(Format::Docker)
            .layer(l.clone())
            .build()
            .unwrap();
        let arm = ImageBuilder::new(Format::Docker)
            .layer(l)
            .platform("linux", "arm64", Some("v8"))
            .build()
            .unwrap();
        let idx = IndexBuilder::new(Format::Docker)
            .image(amd)
            .image(arm)
            .build()
            .unwrap();
        let p = Pusher::new(&reg);
        p.push_index("multi", "v1", &idx).unwrap();
        let oci = ImageBuilder::new(Format::Oci)
            .layer(
                LayerBuilder::new()
                    .file("b", "y")
                    .build(Compression::None)
                    .unwrap(),
            )
            .build()
            .unwrap();
        let idx = IndexBuilder::new(Format::Oci).image(oci).build().unwrap();
        p.push_index("multi", "oci", &idx).unwrap();
    }

    #[test]
    fn htpasswd_registry_rejects_anonymous() {
        let reg = Registry::start_with_htpasswd("alice", "s3cret").unwrap();
        match ureq::get(&format!("{}/v2/", reg.url())).call() {
            Err(ureq::Error::Status(401, _)) => {}
            other => panic!("expected 401, got {other:?}"),
        }
        let img = ImageBuilder::new(Format::Oci)
            .layer(
                LayerBuilder::new()
                    .file("f", "1")
                    .build(Compression::Gzip)
                    .unwrap(),
            )
            .build()
            .unwrap();
        Pusher::new(&reg)
            .push_image("private/app", "v1", &img)
            .unwrap();
    }

    #[test]
    fn archives_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let img = busybox();
        archive::write_docker_save(&img, &["example.com/bb:v1"], &dir.path().join("d.tar"))
            .unwrap();
        archive::write_oci_layout(&img, "example.com/bb:v1", &dir.path().join("o.tar")).unwrap();
        let mut names = vec![];
        for e in tar::Archive::new(std::fs::File::open(dir.path().join("o.tar")).unwrap())
            .entries()
            .unwrap()
        {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"index.json".to_string()));
    }
}
