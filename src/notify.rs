//! Telling systemd how the run goes. Each helper logs a failure to notify and never fails the
//! program: outside systemd (`NOTIFY_SOCKET` unset) they do nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// `STATUS=`, shown by `systemctl status`. One line: newlines would end the field.
pub fn status(text: &str) {
    let line = text.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line)]);
}

/// `STATUS=` plus `EXTEND_TIMEOUT_USEC=`, so a unit with a start timeout does not kill the agent
/// while it is waiting on purpose.
pub fn waiting(text: &str, for_at_least: Duration) {
    let line = text.replace(['\n', '\r'], " ");
    let usec = u32::try_from(for_at_least.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::Status(&line),
        NotifyState::ExtendTimeoutUsec(usec),
    ]);
}

pub fn ready(text: &str) {
    let line = text.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line), NotifyState::Ready]);
}

pub fn failed(text: &str, errno: u32) {
    let line = text.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line), NotifyState::Errno(errno)]);
}
