//! The one EC2 call the agent makes, `DescribeInstances`, spoken directly rather than through
//! `aws-sdk-ec2`, whose single crate took 75 of the 80 minutes of a cold release build on a
//! 2-core machine (BENCHMARKS.md, "Build"). The hard parts stay with the SDK's own crates: the
//! credential chain (`aws-config`) and request signing (`aws-sigv4`).
//!
//! API reference: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html
//! and the EC2 Query protocol (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html):
//! a form-encoded `POST /` with `Action=DescribeInstances&Version=2016-11-15`, filters as
//! `Filter.N.Name` / `Filter.N.Value.M`, `MaxResults` and `NextToken`, signed with SigV4 for the
//! service `ec2`. The answer is XML: `DescribeInstancesResponse` → `reservationSet/item` →
//! `instancesSet/item`, and `nextToken` while more pages follow. Errors are
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::SigningSettings;
use aws_smithy_xml::decode::{Document, ScopedDecoder};

use crate::awsapi::{Signer, text_of, whole_document};
use crate::discovery::DiscoveryError;
use crate::discovery::api::{ApiClient, Failed, retry, retrying, urlencode};
use crate::error::Kind;
use crate::member::excerpt;

pub const API_VERSION: &str = "2016-11-15";
/// The request body's type; sent and signed, so written once.
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// The largest page DescribeInstances serves.
pub const PAGE_SIZE: u32 = 1000;

/// The fields of an instance the agent uses, as the XML names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    /// `instanceId`
    pub id: String,
    /// `instanceState/name`: pending, running, shutting-down, terminated, stopping, stopped.
    pub state: String,
    /// `privateIpAddress`
    pub private_ip: Option<String>,
    /// `ipAddress` (the public IPv4 address)
    pub public_ip: Option<String>,
    /// `ipv6Address`
    pub ipv6: Option<String>,
    /// `launchTime`, as sent (ISO 8601).
    pub launch_time: Option<String>,
    /// `tagSet/item`: key and value.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub instances: Vec<Instance>,
    pub next_token: Option<String>,
}

/// A region's EC2 endpoint and the client that reaches it.
pub struct Ec2<'a> {
    api: &'a ApiClient,
    endpoint: String,
    region: String,
}

impl<'a> Ec2<'a> {
    /// `endpoint`: `None` is the region's public endpoint.
    pub fn new(api: &'a ApiClient, region: String, endpoint: Option<&str>) -> Self {
        let endpoint = match endpoint {
            Some(e) => format!("{}/", e.trim_end_matches('/')),
            None => format!("https://ec2.{region}.amazonaws.com/"),
        };
        Ec2 {
            api,
            endpoint,
            region,
        }
    }

    /// One page of `DescribeInstances`, under the shared retry policy; each attempt is signed
    /// afresh, so a retry never carries a stale timestamp.
    pub async fn describe_instances(
        &self,
        credentials: &Credentials,
        filters: &[(String, String)],
        next_token: Option<&str>,
    ) -> Result<Page, DiscoveryError> {
        let body = request_body(filters, PAGE_SIZE, next_token);
        let url = self.endpoint.as_str();
        retrying(|| async {
            let mut req = self
                .api
                .post(url)
                .header("content-type", CONTENT_TYPE)
                .body(body.clone());
            for (name, value) in self.signature(credentials, &body)? {
                req = req.header(name, value);
            }
            let answer = self.api.exchange(req, url).await?;
            if answer.status.is_success() {
                return parse_page(&answer.body).map_err(|e| {
                    Failed::Again(retry(format!("EC2 API answer from {url}: {e}")), None)
                });
            }
            let error = parse_error(&answer.body);
            Err(classify(
                self.api,
                answer.status,
                url,
                error.as_ref(),
                answer.pause,
            ))
        })
        .await
    }

    /// SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` with temporary
    /// credentials) for a POST of `body` to the endpoint.
    fn signature(
        &self,
        credentials: &Credentials,
        body: &str,
    ) -> Result<Vec<(&'static str, String)>, Failed> {
        let signer = Signer {
            credentials,
            region: &self.region,
            service: "ec2",
            settings: SigningSettings::default(),
        };
        signer
            .headers(
                "POST",
                &self.endpoint,
                &[("content-type", CONTENT_TYPE)],
                body.as_bytes(),
            )
            .map_err(|e| {
                Failed::Final(DiscoveryError {
                    retryable: false,
                    kind: Kind::Config,
                    message: format!("cannot sign the EC2 request: {e}"),
                })
            })
    }
}

/// The form body: every filter with one value (several filters are AND-ed), the page size and
/// the token of the page wanted.
pub fn request_body(
    filters: &[(String, String)],
    page_size: u32,
    next_token: Option<&str>,
) -> String {
    let mut body = format!("Action=DescribeInstances&Version={API_VERSION}");
    for (i, (name, value)) in filters.iter().enumerate() {
        let n = i + 1;
        body.push_str(&format!(
            "&Filter.{n}.Name={}&Filter.{n}.Value.1={}",
            urlencode(name),
            urlencode(value)
        ));
    }
    body.push_str(&format!("&MaxResults={page_size}"));
    if let Some(token) = next_token {
        body.push_str(&format!("&NextToken={}", urlencode(token)));
    }
    body
}

/// Parses one page. A document that stops before its root element closes is an error, not a
/// shorter listing: a cut-off answer must never look like fewer machines.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let text = whole_document(body, "DescribeInstancesResponse")?;
    let mut doc = Document::new(text);
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    if !root.start_el().matches("DescribeInstancesResponse") {
        return Err(format!(
            "expected DescribeInstancesResponse, got {}",
            excerpt(root.start_el().local())
        ));
    }
    let mut page = Page::default();
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("nextToken") {
            let token = text_of(&mut tag)?;
            page.next_token = (!token.is_empty()).then_some(token);
        } else if tag.start_el().matches("reservationSet") {
            while let Some(mut reservation) = tag.next_tag() {
                while let Some(mut field) = reservation.next_tag() {
                    if field.start_el().matches("instancesSet") {
                        while let Some(mut item) = field.next_tag() {
                            page.instances.push(parse_instance(&mut item)?);
                        }
                    }
                }
            }
        }
    }
    Ok(page)
}

fn parse_instance(item: &mut ScopedDecoder) -> Result<Instance, String> {
    let mut instance = Instance::default();
    while let Some(mut field) = item.next_tag() {
        let name = field.start_el().local().to_owned();
        match name.as_str() {
            "instanceId" => instance.id = text_of(&mut field)?,
            "privateIpAddress" => instance.private_ip = non_empty(text_of(&mut field)?),
            "ipAddress" => instance.public_ip = non_empty(text_of(&mut field)?),
            "ipv6Address" => instance.ipv6 = non_empty(text_of(&mut field)?),
            "launchTime" => instance.launch_time = non_empty(text_of(&mut field)?),
            "instanceState" => {
                while let Some(mut s) = field.next_tag() {
                    if s.start_el().matches("name") {
                        instance.state = text_of(&mut s)?;
                    }
                }
            }
            "tagSet" => {
                while let Some(mut tag) = field.next_tag() {
                    let (mut key, mut value) = (String::new(), String::new());
                    while let Some(mut kv) = tag.next_tag() {
                        if kv.start_el().matches("key") {
                            key = text_of(&mut kv)?;
                        } else if kv.start_el().matches("value") {
                            value = text_of(&mut kv)?;
                        }
                    }
                    instance.tags.push((key, value));
                }
            }
            _ => {}
        }
    }
    Ok(instance)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `Errors/Error/Code` and `Message` of an error answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    let mut doc = Document::new(std::str::from_utf8(body).ok()?);
    let mut root = doc.root_element().ok()?;
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        while let Some(mut error) = errors.next_tag() {
            let mut found = ApiError {
                code: String::new(),
                message: String::new(),
            };
            while let Some(mut field) = error.next_tag() {
                if field.start_el().matches("Code") {
                    found.code = text_of(&mut field).ok()?;
                } else if field.start_el().matches("Message") {
                    found.message = text_of(&mut field).ok()?;
                }
            }
            if !found.code.is_empty() {
                return Some(found);
            }
        }
    }
    None
}

/// Rejected credentials and refused parameters are final; throttling and 5xx are retried at
/// once; any other code waits for the next look, named.
fn classify(
    api: &ApiClient,
    status: reqwest::StatusCode,
    url: &str,
    error: Option<&ApiError>,
    pause: Option<std::time::Duration>,
) -> Failed {
    let Some(ApiError { code, message }) = error else {
        return api.unexpected(status, url, "", pause);
    };
    let message = excerpt(message);
    match code.as_str() {
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired" => Failed::Final(DiscoveryError {
            retryable: false,
            kind: Kind::NoPerm,
            message: format!(
                "credentials rejected by the EC2 API ({code}): the role needs ec2:DescribeInstances; {message}"
            ),
        }),
        "InvalidParameterValue" | "InvalidParameterCombination" => Failed::Final(DiscoveryError {
            retryable: false,
            kind: Kind::Config,
            message: format!("the EC2 API refused the request ({code}): {message}"),
        }),
        "RequestLimitExceeded" | "Throttling" | "InternalError" | "Unavailable" => Failed::Again(
            retry(format!(
                "EC2 API answered HTTP {} ({code}): {message}",
                status.as_u16()
            )),
            pause,
        ),
        _ if status.is_server_error() => {
            api.unexpected(status, url, &format!(" ({code}): {message}"), pause)
        }
        _ => Failed::Final(retry(format!(
            "EC2 DescribeInstances failed ({code}): {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_instance(id: &str, state: &str, private_ip: Option<&str>) -> String {
        include_str!("../../../tests/fixtures/aws/instance.xml")
            .replace("@ID@", id)
            .replace("@NAME@", "etcd-a")
            .replace("@STATE@", state)
            .replace("@STATE_CODE@", "16")
            .replace(
                "@PRIVATE_IP@",
                &private_ip
                    .map(|ip| format!("<privateIpAddress>{ip}</privateIpAddress>"))
                    .unwrap_or_default(),
            )
    }

    fn fixture_page(instances: &str, next: &str) -> String {
        include_str!("../../../tests/fixtures/aws/describe_instances.xml")
            .replace("@INSTANCES@", instances)
            .replace("@NEXT_TOKEN@", next)
    }

    #[test]
    fn a_page_in_the_api_reference_shape_parses_field_for_field() {
        let body = fixture_page(
            &fixture_instance("i-0a", "running", Some("10.20.1.5")),
            "<nextToken>tok/en+2=</nextToken>",
        );
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.next_token.as_deref(), Some("tok/en+2="));
        assert_eq!(
            page.instances,
            [Instance {
                id: "i-0a".into(),
                state: "running".into(),
                private_ip: Some("10.20.1.5".into()),
                public_ip: None,
                ipv6: None,
                launch_time: Some("2026-03-02T09:14:05.000Z".into()),
                tags: vec![
                    ("Name".into(), "etcd-a".into()),
                    ("etcd-cluster".into(), "prod".into())
                ],
            }]
        );
    }

    #[test]
    fn the_last_page_has_no_token_and_an_instance_may_lack_addresses() {
        let body = fixture_page(&fixture_instance("i-0b", "pending", None), "");
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.next_token, None);
        assert_eq!(page.instances[0].private_ip, None);
        assert_eq!(page.instances[0].state, "pending");
    }

    #[test]
    fn a_cut_off_document_is_an_error_not_an_empty_listing() {
        let body = fixture_page(&fixture_instance("i-0a", "running", Some("10.0.0.1")), "");
        let cut = &body.as_bytes()[..body.len() / 2];
        let err = parse_page(cut).unwrap_err();
        assert!(
            err.contains("not a complete DescribeInstancesResponse"),
            "{err}"
        );
        assert!(parse_page(b"<DescribeInstancesResponse><reservationSet><item>").is_err());
        assert!(parse_page(b"<Other></DescribeInstancesResponse>").is_err());
    }

    #[test]
    fn an_error_answer_gives_its_code_and_message() {
        let e = parse_error(include_bytes!(
            "../../../tests/fixtures/aws/auth_failure.xml"
        ))
        .unwrap();
        assert_eq!(e.code, "AuthFailure");
        assert!(e.message.starts_with("AWS was not able to validate"));
        assert_eq!(parse_error(b"<html>proxy error</html>"), None);
        assert_eq!(parse_error(b"\xff\xfe"), None);
    }

    #[test]
    fn the_request_body_encodes_filters_in_order_and_escapes_values() {
        let filters = [
            ("tag:etcd-cluster".to_owned(), "prod".to_owned()),
            ("tag:team".to_owned(), "a b&c=d".to_owned()),
        ];
        assert_eq!(
            request_body(&filters, 1000, Some("x/y+z=")),
            "Action=DescribeInstances&Version=2016-11-15\
             &Filter.1.Name=tag%3Aetcd-cluster&Filter.1.Value.1=prod\
             &Filter.2.Name=tag%3Ateam&Filter.2.Value.1=a%20b%26c%3Dd\
             &MaxResults=1000&NextToken=x%2Fy%2Bz%3D"
        );
    }

    #[test]
    fn signing_names_the_key_region_and_service_but_not_the_secret() {
        let api = ApiClient::new("EC2 API", None, std::time::Duration::from_secs(1)).unwrap();
        let ec2 = Ec2::new(&api, "eu-central-1".into(), Some("http://127.0.0.1:1/"));
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "SECRETKEYEXAMPLE",
            Some("SESSION".into()),
            None,
            "test",
        );
        let headers = match ec2.signature(&creds, "Action=DescribeInstances") {
            Ok(h) => h,
            Err(f) => panic!("{}", f.into_error().message),
        };
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-central-1/ec2/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(get("x-amz-security-token"), Some("SESSION"));
        assert!(headers.iter().all(|(_, v)| !v.contains("SECRETKEYEXAMPLE")));
    }
}
