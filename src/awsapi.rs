//! What the two AWS APIs the agent speaks directly (EC2's DescribeInstances, S3 for backups)
//! share: SigV4 signing with the SDK's own signer (`aws-sigv4`), and reading their XML answers
//! with the SDK's own reader (`aws-smithy-xml`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_xml::decode::{ScopedDecoder, try_data};

use crate::member::excerpt;

/// The body as text, when it is a whole document whose root element is `root`: a proxy's HTML
/// page or an answer cut off in transit is an error naming what came instead.
pub fn whole_document<'a>(body: &'a [u8], root: &str) -> Result<&'a str, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
    if !text.trim_end().ends_with(&format!("</{root}>")) {
        return Err(format!(
            "not a complete {root} document: {}",
            excerpt(text.trim())
        ));
    }
    Ok(text)
}

/// An element's text, trimmed.
pub fn text_of(tag: &mut ScopedDecoder) -> Result<String, String> {
    try_data(tag)
        .map(|t| t.trim().to_owned())
        .map_err(|e| format!("in <{}>: {e}", tag.start_el().local()))
}

/// What a request is signed for: whose key, where, and which service's rules.
pub struct Signer<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    /// `ec2`, `s3`.
    pub service: &'a str,
    pub settings: SigningSettings,
}

impl Signer<'_> {
    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256` when the
    /// settings ask for it, and `x-amz-security-token` with temporary credentials) for a request
    /// with these signed `headers` and `body`. Errors never carry the secret.
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(self.settings.clone())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|h| (h.name(), h.value().to_owned()))
            .collect())
    }
}
