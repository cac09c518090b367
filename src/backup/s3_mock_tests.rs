//! The multipart upload against a mock S3 answering as the API reference documents
//! (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload): a part
//! goes on its way while the next fills, parts are named in order, and a part the store refuses
//! leaves no object behind.

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{PART_SIZE, S3Store};

const KEY: &str = "prod/snapshot-20261205T070000Z-1735fe321d725815.db";
const OBJECT: &str = "/etcd-backups/main/prod/snapshot-20261205T070000Z-1735fe321d725815.db";
const UPLOAD_ID: &str = "VXBsb2FkIElEIGZvciBldGNkLWJvb3RzdHJhcA";

fn store(server: &MockServer) -> S3Store {
    S3Store {
        http: reqwest::Client::new(),
        base: format!("{}/etcd-backups/", server.uri()),
        prefix: "main/".into(),
        region: "eu-central-1".into(),
        credentials: Credentials::new(
            "AKIAEXAMPLEBACKUP",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ),
        shown: "s3://etcd-backups/main".into(),
        timeout: Duration::from_secs(10),
    }
}

/// CreateMultipartUpload's answer.
async fn initiates(server: &MockServer) {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>etcd-backups</Bucket><Key>main/{KEY}</Key><UploadId>{UPLOAD_ID}</UploadId></InitiateMultipartUploadResult>"#
    );
    Mock::given(method("POST"))
        .and(path(OBJECT))
        .and(query_param("uploads", ""))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .expect(1)
        .mount(server)
        .await;
}

/// UploadPart for part `n`: 200, an empty body and the part's ETag, after `delay`.
async fn takes_part(server: &MockServer, n: u32, delay: Duration) {
    Mock::given(method("PUT"))
        .and(path(OBJECT))
        .and(query_param("partNumber", n.to_string()))
        .and(query_param("uploadId", UPLOAD_ID))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ETag", format!("\"etag-of-part-{n}\"").as_str())
                .set_delay(delay),
        )
        .expect(1)
        .mount(server)
        .await;
}

fn requests_named(requests: &[wiremock::Request], verb: &str, query: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.query() == Some(query))
        .count()
}

#[tokio::test]
async fn a_part_is_on_its_way_while_the_next_fills_and_all_are_named_in_order() {
    let server = MockServer::start().await;
    initiates(&server).await;
    takes_part(&server, 1, Duration::from_secs(2)).await;
    takes_part(&server, 2, Duration::ZERO).await;
    takes_part(&server, 3, Duration::ZERO).await;
    let completed = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>{}{OBJECT}</Location><Bucket>etcd-backups</Bucket><Key>main/{KEY}</Key><ETag>"3858f62230ac3c915f300c664312c11f-3"</ETag></CompleteMultipartUploadResult>"#,
        server.uri()
    );
    Mock::given(method("POST"))
        .and(path(OBJECT))
        .and(query_param("uploadId", UPLOAD_ID))
        .respond_with(ResponseTemplate::new(200).set_body_string(completed))
        .expect(1)
        .mount(&server)
        .await;

    let mut upload = store(&server).upload(KEY);
    let filled = Instant::now();
    upload.write(&vec![1; PART_SIZE]).await.unwrap();
    // The first part takes the store 2 s: the stream is not held for it.
    assert!(
        filled.elapsed() < Duration::from_secs(1),
        "the first part held the stream for {:?}",
        filled.elapsed()
    );
    upload.write(&vec![2; PART_SIZE]).await.unwrap();
    upload.write(b"the rest").await.unwrap();
    upload.finish().await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let sizes: Vec<(String, usize)> = requests
        .iter()
        .filter(|r| r.method.as_str() == "PUT")
        .map(|r| (r.url.query().unwrap_or_default().to_owned(), r.body.len()))
        .collect();
    assert_eq!(
        sizes,
        [
            (format!("partNumber=1&uploadId={UPLOAD_ID}"), PART_SIZE),
            (format!("partNumber=2&uploadId={UPLOAD_ID}"), PART_SIZE),
            (format!("partNumber=3&uploadId={UPLOAD_ID}"), 8),
        ]
    );
    let complete = requests.last().unwrap();
    assert_eq!(complete.method.as_str(), "POST");
    assert_eq!(
        String::from_utf8_lossy(&complete.body),
        "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Part><PartNumber>1</PartNumber><ETag>&quot;etag-of-part-1&quot;</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>&quot;etag-of-part-2&quot;</ETag></Part>\
         <Part><PartNumber>3</PartNumber><ETag>&quot;etag-of-part-3&quot;</ETag></Part>\
         </CompleteMultipartUpload>"
    );
}

#[tokio::test]
async fn a_part_refused_on_its_way_abandons_the_upload_and_completes_nothing() {
    let server = MockServer::start().await;
    initiates(&server).await;
    Mock::given(method("PUT"))
        .and(path(OBJECT))
        .and(query_param("partNumber", "1"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(OBJECT))
        .and(query_param("uploadId", UPLOAD_ID))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let mut upload = store(&server).upload(KEY);
    // Handed over, not yet answered: the refusal is heard when the next part or the end comes.
    upload.write(&vec![1; PART_SIZE]).await.unwrap();
    upload.write(b"the rest").await.unwrap();
    let e = upload.finish().await.unwrap_err();
    assert!(e.denied, "{}", e.message);
    assert!(
        e.message
            .starts_with("backup store s3://etcd-backups/main: sending part 1 of prod/snapshot-")
            && e.message.contains("AccessDenied"),
        "{}",
        e.message
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests_named(&requests, "DELETE", &format!("uploadId={UPLOAD_ID}")),
        1
    );
    assert_eq!(
        requests_named(&requests, "POST", &format!("uploadId={UPLOAD_ID}")),
        0
    );
    assert_eq!(requests.last().unwrap().method.as_str(), "DELETE");
}
