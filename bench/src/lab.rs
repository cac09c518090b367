//! What every benchmark shares: the mock APIs, the programs being compared, scratch space, and
//! the configuration an agent gets for a given machine.

use std::path::{Path, PathBuf};

use crate::fleet::Machine;
use crate::measure::Cmd;
use crate::mock::{Counts, Mock};

/// The token every client sends; the mock refuses any other.
pub const TOKEN: &str = "bench-token-0123456789abcdef";

pub struct Lab {
    pub mock: Mock,
    pub agent: PathBuf,
    pub baseline: PathBuf,
    pub ca: PathBuf,
    pub tmp: PathBuf,
    /// The smallest size of every benchmark: CI's smoke test.
    pub smoke: bool,
}

#[derive(Clone, Copy)]
pub enum Api<'a> {
    /// DigitalOcean droplets carrying a tag.
    DigitalOcean { tag: &'a str },
    /// Hetzner servers carrying label `key=value`.
    Hetzner { key: &'a str, value: &'a str },
}

impl Api<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Api::DigitalOcean { .. } => "DigitalOcean",
            Api::Hetzner { .. } => "Hetzner",
        }
    }

    /// The largest page the API serves, which the agent asks for.
    pub fn max_page(&self) -> u64 {
        match self {
            Api::DigitalOcean { .. } => 200,
            Api::Hetzner { .. } => 50,
        }
    }

    /// The page size a request without `per_page` gets.
    pub fn default_page(&self) -> u64 {
        match self {
            Api::DigitalOcean { .. } => 20,
            Api::Hetzner { .. } => 25,
        }
    }
}

/// What one agent run is told.
pub struct AgentSetup<'a> {
    pub api: Api<'a>,
    pub me: &'a Machine,
    pub size: usize,
    /// More `[cluster]` lines (`bootstrap_settle = "0s"`); empty keeps the shipped defaults.
    pub cluster_extra: &'a str,
    /// Where its data dir and env file go.
    pub dir: &'a Path,
}

impl Lab {
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.tmp.join(name);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Writes the agent's configuration; returns its path.
    pub fn agent_config(&self, s: &AgentSetup<'_>) -> PathBuf {
        std::fs::create_dir_all(s.dir).expect("agent dir");
        let provider = match s.api {
            Api::DigitalOcean { tag } => format!(
                "provider = \"digitalocean\"\n\n[discovery.digitalocean]\ntag = \"{tag}\"\naddress = \"private_v4\"\n"
            ),
            Api::Hetzner { key, value } => format!(
                "provider = \"hetzner\"\n\n[discovery.hetzner]\nlabel_selector = \"{key}={value}\"\naddress = \"public_v4\"\n"
            ),
        };
        let text = format!(
            "[cluster]\nsize = {size}\ntoken = \"bench\"\ndata_dir = \"{dir}/data\"\n{extra}\n\
             [output]\nenv_file = \"{dir}/etcd.env\"\n\n\
             [etcd]\nbinary = \"{etcd}\"\n\n\
             [discovery]\ntimeout = \"5m\"\n{provider}\
             api_url = \"{api}\"\nmetadata_url = \"{metadata}\"\nca_file = \"{ca}\"\n",
            size = s.size,
            extra = s.cluster_extra,
            dir = s.dir.display(),
            api = self.mock.api_url,
            metadata = self.mock.metadata_of(s.me.id),
            ca = self.ca.display(),
            etcd = crate::formation::etcd_bin().display(),
        );
        let path = s.dir.join("config.toml");
        std::fs::write(&path, text).expect("agent config");
        path
    }

    /// `etcd-bootstrap --config <config> <args>`, with the token in the provider's variable.
    pub fn agent_cmd(&self, label: &str, s: &AgentSetup<'_>, args: &[&str]) -> Cmd {
        let config = self.agent_config(s);
        let mut all = vec!["--config", config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let var = match s.api {
            Api::DigitalOcean { .. } => "DIGITALOCEAN_TOKEN",
            Api::Hetzner { .. } => "HCLOUD_TOKEN",
        };
        Cmd::new(label, &self.agent, &all).env(var, TOKEN)
    }

    /// The shell baseline (`bench/baseline/discover.sh`) as machine `me`, writing `env_file`.
    pub fn baseline_cmd(&self, api: Api<'_>, me: &Machine, env_file: &Path) -> Cmd {
        let (provider, selector) = match api {
            Api::DigitalOcean { tag } => ("digitalocean", tag.to_owned()),
            Api::Hetzner { key, value } => ("hetzner", format!("{key}={value}")),
        };
        Cmd::new("shell baseline (curl + jq)", "/bin/sh", &[])
            .arg(&self.baseline.to_string_lossy())
            .env("PROVIDER", provider)
            .env("API_URL", &self.mock.api_url)
            .env("METADATA_URL", self.mock.metadata_of(me.id))
            .env("SELECTOR", selector)
            .env("TOKEN", TOKEN)
            .env("CA_FILE", self.ca.to_string_lossy())
            .env("ENV_FILE", env_file.to_string_lossy())
    }

    /// One `curl` of the listing URL the baseline asks for: the floor of any discovery.
    pub fn curl_cmd(&self, api: Api<'_>) -> Cmd {
        let url = match api {
            Api::DigitalOcean { tag } => {
                format!("{}/v2/droplets?tag_name={tag}", self.mock.api_url)
            }
            Api::Hetzner { key, value } => {
                format!(
                    "{}/v1/servers?label_selector={key}={value}",
                    self.mock.api_url
                )
            }
        };
        let auth = format!("Authorization: Bearer {TOKEN}");
        let ca = self.ca.to_string_lossy();
        Cmd::new(
            "one curl (the floor)",
            "/usr/bin/curl",
            &["-sf", "-o", "/dev/null", "--cacert", &ca, "-H", &auth, &url],
        )
    }

    /// The mock's counts since the last look, compared with what a run must have asked.
    pub fn expect(&self, metadata: u64, pages: u64) -> Result<Counts, String> {
        let got = self.mock.take();
        if got.metadata != metadata || got.pages != pages || got.throttled + got.refused != 0 {
            return Err(format!(
                "expected {metadata} metadata and {pages} page requests, the mock saw {got:?}"
            ));
        }
        Ok(got)
    }
}

/// `KEY=VALUE` lines of an env file.
pub fn env_map(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The member count of an env file's `ETCD_INITIAL_CLUSTER`.
pub fn initial_cluster_len(text: &str) -> usize {
    env_map(text)
        .iter()
        .find(|(k, _)| k == "ETCD_INITIAL_CLUSTER")
        .map_or(0, |(_, v)| v.split(',').filter(|s| !s.is_empty()).count())
}
