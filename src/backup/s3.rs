//! An `s3://` store: AWS S3 or any S3-compatible store (DigitalOcean Spaces, Hetzner Object
//! Storage, MinIO, Ceph RGW), spoken directly with reqwest and signed with SigV4 (`aws-sigv4`,
//! already built for the EC2 provider). The calls, from the S3 API reference
//! (https://docs.aws.amazon.com/AmazonS3/latest/API/): ListObjectsV2 (`GET ?list-type=2`),
//! GetObject, PutObject, DeleteObject, and the multipart upload (CreateMultipartUpload
//! `POST ?uploads`, UploadPart `PUT ?partNumber=N&uploadId=ID`, CompleteMultipartUpload
//! `POST ?uploadId=ID`, AbortMultipartUpload `DELETE ?uploadId=ID`). Errors are
//! `<Error><Code/><Message/></Error>`.
//!
//! A database is sent in parts of `PART_SIZE` as it streams from etcd, one part on its way while
//! the next fills, so memory does not grow with it (two parts at most) and etcd's stream does not
//! wait for the store; one smaller than a part goes in one PutObject.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
};
use aws_smithy_xml::decode::Document;
use reqwest::Method;

use super::store::{Object, StoreError};
use crate::awsapi::{Signer, text_of, whole_document};
use crate::config::{BackupSettings, StoreUrl};
use crate::discovery::api::urlencode;
use crate::discovery::secret::load_token;
use crate::member::excerpt;

/// Each part of a multipart upload (S3's smallest is 5 MiB, its most parts 10 000: up to 80 GiB,
/// ten times etcd's largest supported database).
pub const PART_SIZE: usize = 8 << 20;
/// Parts on their way at once while the next fills. Two measured no faster than one against
/// moto (BENCHMARKS.md, section 7 notes) and cost a part's memory more.
const IN_FLIGHT: usize = 1;

pub struct S3Store {
    http: reqwest::Client,
    /// `https://host[:port]/bucket/` (path style) or `https://bucket.host/`.
    base: String,
    prefix: String,
    region: String,
    credentials: Credentials,
    /// For messages: `s3://bucket/prefix`.
    shown: String,
    timeout: Duration,
}

pub struct S3Upload {
    store: Arc<S3Store>,
    key: String,
    /// The key's path in the bucket.
    path: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    /// `(part number, ETag)` of each part sent.
    parts: Vec<(u32, String)>,
    /// The parts on their way while the next one fills, oldest first: at most `IN_FLIGHT`, as
    /// each holds `PART_SIZE`.
    sending: VecDeque<tokio::task::JoinHandle<Result<(u32, String), StoreError>>>,
}

struct Answer {
    status: reqwest::StatusCode,
    etag: Option<String>,
    body: Vec<u8>,
}

impl S3Store {
    pub async fn open(settings: &BackupSettings) -> Result<S3Store, StoreError> {
        let StoreUrl::S3 { bucket, prefix } = &settings.store else {
            unreachable!("an s3:// store")
        };
        let base = match (&settings.endpoint, settings.path_style) {
            (Some(endpoint), true) => format!("{endpoint}/{bucket}/"),
            (Some(endpoint), false) => {
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                format!("{scheme}://{bucket}.{host}/")
            }
            (None, true) => format!("https://s3.{}.amazonaws.com/{bucket}/", settings.region),
            (None, false) => format!("https://{bucket}.s3.{}.amazonaws.com/", settings.region),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .read_timeout(settings.timeout)
            .build()
            .map_err(|e| {
                StoreError::new(format!("cannot set up the backup store's client: {e}"))
            })?;
        Ok(S3Store {
            http,
            base,
            prefix: prefix.clone(),
            region: settings.region.clone(),
            credentials: credentials(settings).await?,
            shown: settings.store.to_string(),
            timeout: settings.timeout,
        })
    }

    fn clone_for_upload(&self) -> S3Store {
        S3Store {
            http: self.http.clone(),
            base: self.base.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            credentials: self.credentials.clone(),
            shown: self.shown.clone(),
            timeout: self.timeout,
        }
    }

    /// A request for `url`, with its SigV4 headers for `body`.
    fn signed(
        &self,
        method: Method,
        url: &str,
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, StoreError> {
        let mut request = self.http.request(method.clone(), url);
        for (name, value) in self.signature(method.as_str(), url, body)? {
            request = request.header(name, value);
        }
        Ok(request)
    }

    /// The error for an answer outside 2xx: S3's code and message (or the status and what the
    /// body says), what to do for the refusals an operator can fix, and whether the key was
    /// refused (exit 77).
    fn refused(&self, status: reqwest::StatusCode, body: &[u8], what: &str) -> StoreError {
        let (code, message) = parse_error(body).unwrap_or_else(|| {
            (
                format!("HTTP {}", status.as_u16()),
                excerpt(String::from_utf8_lossy(body).trim()),
            )
        });
        StoreError {
            denied: status == reqwest::StatusCode::FORBIDDEN
                || status == reqwest::StatusCode::UNAUTHORIZED,
            message: format!(
                "backup store {}: {what}: {code}: {}{}",
                self.shown,
                excerpt(&message),
                match status.as_u16() {
                    403 =>
                        "; check the access key and that it may list, read, write and delete under the prefix (docs/backup.md)",
                    404 if code == "NoSuchBucket" => "; create the bucket (backup.url)",
                    _ => "",
                }
            ),
        }
    }

    /// A key's path in the bucket.
    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// One signed call on `path` in the bucket (empty: the bucket itself); `what` names it in
    /// errors. An answer outside 2xx is an error naming
    /// S3's code and message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Vec<u8>,
        what: &str,
    ) -> Result<Answer, StoreError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let request = self.signed(method, &url, &body)?;
        let failed = |e: reqwest::Error| {
            let why = if e.is_timeout() {
                format!("no answer within {:?} (backup.timeout)", self.timeout)
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                e.without_url().to_string()
            };
            StoreError::new(format!("backup store {}: {what}: {why}", self.shown))
        };
        let response = request.body(body).send().await.map_err(failed)?;
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(failed)?.to_vec();
        if status.is_success() {
            return Ok(Answer { status, etag, body });
        }
        Err(self.refused(status, &body, what))
    }

    fn signature(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, StoreError> {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let signer = Signer {
            credentials: &self.credentials,
            region: &self.region,
            service: "s3",
            settings,
        };
        signer.headers(method, url, &[], body).map_err(|e| {
            StoreError::new(format!("cannot sign the request to the backup store: {e}"))
        })
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!(
                "list-type=2&prefix={}",
                urlencode(&format!("{}{prefix}", self.prefix))
            );
            if let Some(t) = &token {
                query = format!("continuation-token={}&{query}", urlencode(t));
            }
            let answer = self
                .call(Method::GET, "", &query, Vec::new(), "listing the snapshots")
                .await?;
            let page = parse_list(&answer.body).map_err(|e| {
                StoreError::new(format!(
                    "backup store {}: listing the snapshots: {e}",
                    self.shown
                ))
            })?;
            for (key, size) in page.objects {
                if let Some(key) = key.strip_prefix(&self.prefix) {
                    out.push(Object {
                        key: key.to_owned(),
                        size,
                    });
                }
            }
            match page.next {
                Some(next) if page.truncated => token = Some(next),
                _ => return Ok(out),
            }
        }
    }

    pub async fn get(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        let answer = self
            .call(
                Method::GET,
                &self.object(key),
                "",
                Vec::new(),
                &format!("reading {key}"),
            )
            .await?;
        if answer.body.len() > limit {
            return Err(StoreError::new(format!(
                "backup store {}: {key} is larger than {limit} bytes",
                self.shown
            )));
        }
        Ok(answer.body)
    }

    /// GetObject, streamed to `dest` as it arrives.
    pub async fn download(&self, key: &str, dest: &Path) -> Result<u64, StoreError> {
        use std::io::Write;
        let url = format!("{}{}", self.base, self.object(key));
        let request = self.signed(Method::GET, &url, &[])?;
        let what = format!("reading {key}");
        let failed = |e: &dyn std::fmt::Display| {
            StoreError::new(format!("backup store {}: {what}: {e}", self.shown))
        };
        let mut response = request.send().await.map_err(|e| failed(&e.without_url()))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            return Err(self.refused(status, &body, &what));
        }
        let mut file = std::fs::File::create(dest).map_err(|e| failed(&e))?;
        let mut size = 0u64;
        while let Some(piece) = response
            .chunk()
            .await
            .map_err(|e| failed(&e.without_url()))?
        {
            file.write_all(&piece).map_err(|e| failed(&e))?;
            size += piece.len() as u64;
        }
        file.sync_all().map_err(|e| failed(&e))?;
        Ok(size)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(
            Method::DELETE,
            &self.object(key),
            "",
            Vec::new(),
            &format!("deleting {key}"),
        )
        .await
        .map(drop)
    }

    pub fn upload(&self, key: &str) -> S3Upload {
        S3Upload {
            store: Arc::new(self.clone_for_upload()),
            key: key.to_owned(),
            path: self.object(key),
            buffer: Vec::with_capacity(PART_SIZE),
            upload_id: None,
            parts: Vec::new(),
            sending: VecDeque::new(),
        }
    }
}

impl S3Upload {
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            let room = PART_SIZE - self.buffer.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = later;
            if self.buffer.len() == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Hands the full buffer to a task that sends it as the next part, once fewer than
    /// `IN_FLIGHT` are on their way: the stream from etcd goes on filling a fresh buffer meanwhile.
    async fn send_part(&mut self) -> Result<(), StoreError> {
        while self.sending.len() >= IN_FLIGHT {
            self.oldest_sent().await?;
        }
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let what = format!("starting the upload of {}", self.key);
                let answer = self
                    .store
                    .call(Method::POST, &self.path, "uploads", Vec::new(), &what)
                    .await?;
                let id = parse_upload_id(&answer.body).ok_or_else(|| {
                    StoreError::new(format!(
                        "backup store {}: {what}: no UploadId in the answer",
                        self.store.shown
                    ))
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = (self.parts.len() + self.sending.len()) as u32 + 1;
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_SIZE));
        let query = format!("partNumber={number}&uploadId={}", urlencode(&upload_id));
        let what = format!("sending part {number} of {}", self.key);
        let (store, path) = (Arc::clone(&self.store), self.path.clone());
        self.sending.push_back(tokio::spawn(async move {
            let answer = store.call(Method::PUT, &path, &query, body, &what).await?;
            let etag = answer.etag.ok_or_else(|| {
                StoreError::new(format!(
                    "backup store {}: {what}: no ETag in the answer",
                    store.shown
                ))
            })?;
            Ok((number, etag))
        }));
        Ok(())
    }

    /// Waits for the oldest part on its way, if any, and records its ETag.
    async fn oldest_sent(&mut self) -> Result<(), StoreError> {
        let Some(sending) = self.sending.pop_front() else {
            return Ok(());
        };
        let (number, etag) = sending.await.map_err(|e| {
            StoreError::new(format!(
                "backup store {}: sending a part of {}: {e}",
                self.store.shown, self.key
            ))
        })??;
        self.parts.push((number, etag));
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let result = self.complete().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn complete(&mut self) -> Result<(), StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buffer);
            let what = format!("writing {}", self.key);
            return self
                .store
                .call(Method::PUT, &self.path, "", body, &what)
                .await
                .map(drop);
        };
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        while !self.sending.is_empty() {
            self.oldest_sent().await?;
        }
        let mut xml = String::from(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
        );
        for (number, etag) in &self.parts {
            let etag = etag
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('"', "&quot;");
            xml.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let what = format!("completing the upload of {}", self.key);
        let query = format!("uploadId={}", urlencode(&upload_id));
        let answer = self
            .store
            .call(Method::POST, &self.path, &query, xml.into_bytes(), &what)
            .await?;
        // S3 may answer 200 and still fail the completion, with an <Error> document.
        if let Some((code, message)) = parse_error(&answer.body) {
            return Err(StoreError::new(format!(
                "backup store {}: {what}: {code}: {}",
                self.store.shown,
                excerpt(&message)
            )));
        }
        debug_assert!(answer.status.is_success());
        self.upload_id = None;
        Ok(())
    }

    pub async fn abort(mut self) {
        // The parts on their way are let finish (within backup.timeout) rather than cut off,
        // so that none arrives after the abort and outlives it.
        for sending in std::mem::take(&mut self.sending) {
            let _ = sending.await;
        }
        let Some(upload_id) = &self.upload_id else {
            return;
        };
        let query = format!("uploadId={}", urlencode(upload_id));
        let what = format!("abandoning the upload of {}", self.key);
        if let Err(e) = self
            .store
            .call(Method::DELETE, &self.path, &query, Vec::new(), &what)
            .await
        {
            tracing::warn!(
                "{e}; a lifecycle rule for incomplete multipart uploads clears it (docs/backup.md)"
            );
        }
    }
}

/// The access key: `backup.access_key_id_file` and `backup.secret_access_key_file`, else the
/// systemd credentials `backup-access-key-id` and `backup-secret-access-key` (files of those
/// names in /etc/etcd-bootstrap/credentials/ with the shipped units), else the AWS SDK's chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, web identity, the instance's role).
async fn credentials(settings: &BackupSettings) -> Result<Credentials, StoreError> {
    let from_files = |id: &Path, secret: &Path| -> Result<Credentials, StoreError> {
        let read = |path: &Path, key: &str| {
            load_token(Some(path), "", "", key)
                .map_err(|e| StoreError::new(format!("backup store credentials: {e}")))
        };
        let id = read(id, "backup.access_key_id")?;
        let secret = read(secret, "backup.secret_access_key")?;
        Ok(Credentials::new(
            id.expose(),
            secret.expose(),
            None,
            None,
            "etcd-bootstrap",
        ))
    };
    if let (Some(id), Some(secret)) = (
        &settings.access_key_id_file,
        &settings.secret_access_key_file,
    ) {
        return from_files(id, secret);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let find = |name: &str| {
            [name.to_owned(), format!("etcd-bootstrap_{name}")]
                .into_iter()
                .map(|n| Path::new(&dir).join(n))
                .find(|p| p.exists())
        };
        if let (Some(id), Some(secret)) = (
            find("backup-access-key-id"),
            find("backup-secret-access-key"),
        ) {
            return from_files(&id, &secret);
        }
    }
    let chain = DefaultCredentialsChain::builder()
        .region(aws_config::Region::new(settings.region.clone()))
        .build()
        .await;
    chain.provide_credentials().await.map_err(|e| {
        StoreError::new(format!(
            "no credentials for the backup store {}: {}; put the access key in /etc/etcd-bootstrap/credentials/backup-access-key-id and backup-secret-access-key, or give the instance a role (docs/backup.md)",
            settings.store,
            excerpt(&e.to_string())
        ))
    })
}

struct ListPage {
    objects: Vec<(String, u64)>,
    truncated: bool,
    next: Option<String>,
}

/// `ListBucketResult`: `Contents/Key` and `Size`, `IsTruncated`, `NextContinuationToken`.
fn parse_list(body: &[u8]) -> Result<ListPage, String> {
    let text = whole_document(body, "ListBucketResult")?;
    let mut doc = Document::new(text);
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    let mut page = ListPage {
        objects: Vec::new(),
        truncated: false,
        next: None,
    };
    while let Some(mut tag) = root.next_tag() {
        let name = tag.start_el().local().to_owned();
        match name.as_str() {
            "IsTruncated" => page.truncated = text_of(&mut tag)? == "true",
            "NextContinuationToken" => page.next = Some(text_of(&mut tag)?),
            "Contents" => {
                let (mut key, mut size) = (None, 0);
                while let Some(mut field) = tag.next_tag() {
                    if field.start_el().matches("Key") {
                        key = Some(text_of(&mut field)?);
                    } else if field.start_el().matches("Size") {
                        size = text_of(&mut field)?
                            .parse()
                            .map_err(|_| "a Size is not a number".to_owned())?;
                    }
                }
                page.objects
                    .push((key.ok_or("an object without a Key")?, size));
            }
            _ => {}
        }
    }
    Ok(page)
}

fn parse_upload_id(body: &[u8]) -> Option<String> {
    let mut doc = Document::new(std::str::from_utf8(body).ok()?);
    let mut root = doc.root_element().ok()?;
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("UploadId") {
            return text_of(&mut tag).ok().filter(|id| !id.is_empty());
        }
    }
    None
}

/// `<Error><Code/><Message/></Error>`.
fn parse_error(body: &[u8]) -> Option<(String, String)> {
    let mut doc = Document::new(std::str::from_utf8(body).ok()?);
    let mut root = doc.root_element().ok()?;
    if !root.start_el().matches("Error") {
        return None;
    }
    let (mut code, mut message) = (String::new(), String::new());
    while let Some(mut field) = root.next_tag() {
        if field.start_el().matches("Code") {
            code = text_of(&mut field).ok()?;
        } else if field.start_el().matches("Message") {
            message = text_of(&mut field).ok()?;
        }
    }
    (!code.is_empty()).then_some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ListObjectsV2's answer, shaped as the API reference's example.
    #[test]
    fn a_list_page_gives_keys_sizes_and_the_next_token() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>etcd-backups</Name>
  <Prefix>prod/main/</Prefix>
  <KeyCount>2</KeyCount>
  <MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>prod/main/prod/snapshot-20261121T095005Z-1735fe321d725815.db</Key>
    <LastModified>2026-11-21T09:50:07.000Z</LastModified>
    <ETag>"599bab3ed2c697f1d26842727561fd94"</ETag>
    <Size>20480</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>prod/main/prod/snapshot-20261121T095005Z-1735fe321d725815.json</Key>
    <LastModified>2026-11-21T09:50:07.000Z</LastModified>
    <ETag>"7f3c1b0e2a4d5f6e7d8c9b0a1f2e3d4c"</ETag>
    <Size>612</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
</ListBucketResult>"#;
        let page = parse_list(body).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(
            page.objects[0],
            (
                "prod/main/prod/snapshot-20261121T095005Z-1735fe321d725815.db".into(),
                20480
            )
        );
        assert!(page.truncated);
        assert_eq!(
            page.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert!(parse_list(b"<ListBucketResult><Contents><Key>a</Key>").is_err());
        assert!(parse_list(b"<html>proxy error</html>").is_err());
    }

    #[test]
    fn errors_and_upload_ids_are_read_from_their_documents() {
        let error = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
        assert_eq!(
            parse_error(error),
            Some(("AccessDenied".into(), "Access Denied".into()))
        );
        assert_eq!(parse_error(b"<ListBucketResult/>"), None);
        let initiated = br#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>etcd-backups</Bucket><Key>prod/x.db</Key><UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(
            parse_upload_id(initiated).as_deref(),
            Some("VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        );
    }
}

#[cfg(test)]
#[path = "s3_mock_tests.rs"]
mod mock_tests;
