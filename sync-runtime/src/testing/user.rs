//! One connected user and what a test expects of it; every failure names the user, the transport and
//! the path, what was expected, and what arrived instead.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

use futures_util::FutureExt;

use crate::client::{
    ClientError, ConnectOptions, ErrorReply, Located, PresenceList, ReceivedReaction, SyncClient,
};
use crate::{ErrorCode, Outcome};

use super::{Endpoint, Transport};

/// How many of the latest things a user received a failure message lists.
const RECENT: usize = 16;

/// The longest a reaction's JSON gets in a failure message.
const SHOWN: usize = 300;

/// Who a user is, for failure messages.
#[derive(Debug, Clone)]
pub(super) struct Who {
    pub name: String,
    pub transport: Transport,
    pub path: String,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, at {})", self.name, self.transport, self.path)
    }
}

/// A user connected to a [`TestServer`](super::TestServer), from [`TestServer::connect`](super::TestServer::connect).
///
/// Each `expect…` waits at most the server's [`timeout`](super::TestServer::timeout) and fails the test
/// with a message that says who was waiting, where, for what, and what arrived instead (the latest
/// reactions and errors this user received, and its resyncs).
///
/// ```no_run
/// # use serde_json::json;
/// # use sync_runtime::testing::TestServer;
/// # async fn test(app: TestServer) -> Result<(), sync_runtime::client::ClientError> {
/// let mut alice = app.connect("/home").token("alice").await;
/// let mut carol = app.connect("/home").token("carol").await;
/// let outcome = alice.request("refreshData", json!({ "text": "Hello" })).await?;
/// assert_eq!(outcome.delivered, 2);
/// for user in [&mut alice, &mut carol] {
///     let post = user.expect("refreshData").await;
///     assert_eq!(post.reaction["html"], "<li><b>alice</b> Hello</li>");
///     user.expect_nothing().await;
/// }
/// # Ok(())
/// # }
/// ```
pub struct TestUser {
    client: SyncClient,
    who: Who,
    endpoint: Endpoint,
    /// What it connected with (no cursor): what [`reopen`](Self::reopen) connects with again.
    options: ConnectOptions,
    recent: VecDeque<String>,
    /// `resync`s already reported or expected.
    resyncs: u64,
}

impl fmt::Debug for TestUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestUser")
            .field("who", &self.who.to_string())
            .field("connection", &self.client.connection())
            .finish_non_exhaustive()
    }
}

impl TestUser {
    pub(super) fn new(
        client: SyncClient,
        who: Who,
        endpoint: Endpoint,
        options: ConnectOptions,
    ) -> TestUser {
        TestUser {
            client,
            who,
            endpoint,
            options,
            recent: VecDeque::new(),
            resyncs: 0,
        }
    }

    /// What failure messages call this user.
    pub fn name(&self) -> &str {
        &self.who.name
    }

    /// The path the user is on.
    pub fn path(&self) -> &str {
        &self.who.path
    }

    /// The client underneath, for what these helpers do not cover. What is taken from it directly is not
    /// in this user's failure messages.
    pub fn client(&mut self) -> &mut SyncClient {
        &mut self.client
    }

    /// The next reaction, which must be sync `name`'s; returned for further checks. Fails if another
    /// reaction comes first, if none comes in time, or if the connection closes.
    pub async fn expect(&mut self, name: &str) -> ReceivedReaction {
        let reaction = self.next(&format!("reaction `{name}`")).await;
        if reaction.name != name {
            let got = describe(&reaction);
            self.fail(format!(
                "expected reaction `{name}`, but the next one was {got}"
            ));
        }
        self.note(describe(&reaction));
        reaction
    }

    /// The next reaction, whatever its name. Fails if none comes in time or the connection closes.
    pub async fn next_reaction(&mut self) -> ReceivedReaction {
        let reaction = self.next("a reaction").await;
        self.note(describe(&reaction));
        reaction
    }

    /// Nothing arrived that was not expected already, and nothing is on its way: no reaction, no error
    /// frame, no `resync`. It waits for one round trip (a `ping` answered by a `pong`), not for a
    /// timeout; see [the module docs](super#what-expect_nothing-proves) for what that covers.
    pub async fn expect_nothing(&mut self) {
        let answered = self.endpoint.within(self.client.ping()).await;
        let mut unexpected = Vec::new();
        while let Some(Some(reaction)) = self.client.next_reaction().now_or_never() {
            unexpected.push(describe(&reaction));
        }
        while let Some(Some(error)) = self.client.next_error().now_or_never() {
            unexpected.push(describe_error(&error));
        }
        let resyncs = self.client.resyncs();
        if resyncs > self.resyncs {
            unexpected.push(format!("{} resync", resyncs - self.resyncs));
            self.resyncs = resyncs;
        }
        let listed = list(&unexpected);
        match answered {
            Some(Ok(())) if unexpected.is_empty() => {}
            Some(Ok(())) => self.fail(format!("expected nothing, but received:{listed}")),
            Some(Err(_)) => {
                let closed = self.close_reason().await;
                self.fail(format!(
                    "expected nothing, but the connection {closed}; before that it received:{listed}"
                ))
            }
            None => self.fail(format!(
                "expected nothing, but the server did not answer a ping within {:?} (a rate limit? a \
                 stuck connection?); meanwhile it received:{listed}",
                self.endpoint.timeout
            )),
        }
    }

    /// The next error frame that answers no request (a malformed frame, a rate limit), which must carry
    /// `code`. A refused [`request`](Self::request) returns its error instead.
    pub async fn expect_error(&mut self, code: ErrorCode) -> ErrorReply {
        match self.endpoint.within(self.client.next_error()).await {
            Some(Some(error)) => {
                let got = describe_error(&error);
                if error.code != code {
                    self.fail(format!("expected error `{code}`, but got {got}"));
                }
                self.note(got);
                error
            }
            Some(None) => {
                let closed = self.close_reason().await;
                self.fail(format!(
                    "expected error `{code}`, but the connection {closed}"
                ))
            }
            None => self.fail(format!(
                "expected error `{code}` within {:?}, but none arrived",
                self.endpoint.timeout
            )),
        }
    }

    /// A `resync` arrived (the server could not replay what this user missed), one more than already
    /// expected.
    pub async fn expect_resync(&mut self) {
        let want = self.resyncs + 1;
        let status = self
            .endpoint
            .within(self.client.status_until(|s| s.resyncs >= want))
            .await;
        match status {
            Some(Some(_)) => self.resyncs = want,
            _ => self.fail(format!(
                "expected a resync within {:?}, but none arrived",
                self.endpoint.timeout
            )),
        }
    }

    /// Wait until the path's presence list is exactly `users` (user keys, in any order, none beyond the
    /// listed ones); returns it, with each user's view. Needs a presence mapping on the hub.
    pub async fn expect_presence(&mut self, users: &[&str]) -> PresenceList {
        let mut want = users.to_vec();
        want.sort_unstable();
        let what = format!("the users on {} to be {users:?}", self.who.path);
        self.expect_presence_where(&what, |list| {
            let mut keys = list.user_keys();
            keys.sort_unstable();
            list.count == want.len() && keys == want
        })
        .await
    }

    /// Wait until the path's presence list satisfies `ready` (`what` says what the test waits for, in
    /// the failure message, which also shows the last list); returns it.
    ///
    /// ```no_run
    /// # async fn test(carol: &mut sync_runtime::testing::TestUser) {
    /// carol
    ///     .expect_presence_where("bob listed in team blue", |list| {
    ///         list.users.iter().any(|(user, view)| user == "bob" && view["team"] == "blue")
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn expect_presence_where(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&PresenceList) -> bool,
    ) -> PresenceList {
        let status = self
            .endpoint
            .within(
                self.client
                    .status_until(|s| s.presence.as_ref().is_some_and(&mut ready)),
            )
            .await;
        match status.flatten().and_then(|s| s.presence) {
            Some(list) => list,
            None => {
                let last = match self.client.presence() {
                    Some(list) => describe_list(&list),
                    None => "none (a hub without a presence mapping sends none)".to_owned(),
                };
                self.fail(format!(
                    "expected {what} within {:?}; the last list: {last}",
                    self.endpoint.timeout
                ))
            }
        }
    }

    /// Request sync `name` on the user's path, and wait for its outcome (or the refusal, with its
    /// [`code`](ClientError::code)). Once it returns, the fan-out has queued every reaction on this
    /// server: [`expect_nothing`](Self::expect_nothing) on anyone covers it.
    pub async fn request(
        &mut self,
        name: &str,
        data: impl serde::Serialize,
    ) -> Result<Outcome, ClientError> {
        self.request_with(name, data, true).await
    }

    /// Like [`request`](Self::request); `echo: false` leaves this user's connection out.
    pub async fn request_with(
        &mut self,
        name: &str,
        data: impl serde::Serialize,
        echo: bool,
    ) -> Result<Outcome, ClientError> {
        let asked = self.client.request_with(name, data, echo);
        match self.endpoint.within(asked).await {
            Some(answer) => answer,
            None => self.fail(format!(
                "requested `{name}`, but no outcome came within {:?}",
                self.endpoint.timeout
            )),
        }
    }

    /// Go to `path` (a navigation in the page): returns once the server placed the user there.
    pub async fn navigate(&mut self, path: &str) -> Located {
        match self.endpoint.within(self.client.navigate(path)).await {
            Some(Ok(located)) => {
                self.who.path.clone_from(&located.path);
                located
            }
            Some(Err(e)) => self.fail(format!("could not navigate to {path}: {e}")),
            None => self.fail(format!(
                "navigated to {path}, but was not placed there within {:?}",
                self.endpoint.timeout
            )),
        }
    }

    /// The server closed the connection: its close code and reason. Fails if a reaction comes first,
    /// or nothing in time.
    pub async fn expect_closed(&mut self) -> (u16, String) {
        match self.endpoint.within(self.client.next_reaction()).await {
            Some(None) => {}
            Some(Some(reaction)) => {
                let got = describe(&reaction);
                self.fail(format!(
                    "expected the connection to close, but received {got}"
                ))
            }
            None => self.fail(format!(
                "expected the connection to close within {:?}, but it stayed open",
                self.endpoint.timeout
            )),
        }
        self.client.closed().await.unwrap_or((1005, String::new()))
    }

    /// Leave (close the tab): returns once the server has let go of the connection, so the user is off
    /// the path's presence at once.
    pub async fn close(self) {
        self.client.close().await;
    }

    /// Leave and come back (reload the page): a new connection with the same credentials, at the path
    /// the user is on now. Fails the test if the server refuses it.
    pub async fn reopen(self) -> TestUser {
        let TestUser {
            client,
            who,
            endpoint,
            options,
            ..
        } = self;
        client.close().await;
        let url = endpoint.url(who.transport);
        let again = options.clone().path(who.path.as_str());
        match endpoint.within(SyncClient::connect(&url, again)).await {
            Some(Ok(client)) => TestUser::new(client, who, endpoint, options),
            Some(Err(e)) => panic!("{who} could not connect again: {e}"),
            None => panic!(
                "{who} could not connect again within {:?}",
                endpoint.timeout
            ),
        }
    }

    /// The next reaction, waiting for `what`.
    async fn next(&mut self, what: &str) -> ReceivedReaction {
        match self.endpoint.within(self.client.next_reaction()).await {
            Some(Some(reaction)) => reaction,
            Some(None) => {
                let closed = self.close_reason().await;
                self.fail(format!("expected {what}, but the connection {closed}"))
            }
            None => self.fail(format!(
                "expected {what} within {:?}, but no reaction arrived",
                self.endpoint.timeout
            )),
        }
    }

    /// Remember something expected for failure messages.
    fn note(&mut self, line: String) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// "closed (1008 token expired)", once the client has stopped.
    async fn close_reason(&mut self) -> String {
        match self.endpoint.within(self.client.closed()).await.flatten() {
            Some((code, reason)) => format!("was closed ({code} {reason})"),
            None => "was closed without a close code".to_owned(),
        }
    }

    /// Fail the test: `problem`, then what this user received lately.
    fn fail(&mut self, problem: String) -> ! {
        let mut message = format!("{}: {problem}", self.who);
        let recent: Vec<&String> = self.recent.iter().collect();
        if recent.is_empty() {
            message.push_str("\nBefore that it had received nothing.");
        } else {
            let _ = write!(
                message,
                "\nBefore that it received, oldest first:{}",
                list(&recent)
            );
        }
        let errors: Vec<String> = std::iter::from_fn(|| self.client.next_error().now_or_never())
            .map_while(|error| error.as_ref().map(describe_error))
            .collect();
        if !errors.is_empty() {
            let _ = write!(message, "\nError frames not yet taken:{}", list(&errors));
        }
        let resyncs = self.client.resyncs();
        if resyncs > 0 {
            let _ = write!(message, "\nResyncs: {resyncs}.");
        }
        panic!("{message}");
    }
}

/// "`refreshData` (#3 on /dashboard): {...}".
fn describe(reaction: &ReceivedReaction) -> String {
    let mut json = reaction.reaction.to_string();
    if json.len() > SHOWN {
        let mut end = SHOWN;
        while !json.is_char_boundary(end) {
            end -= 1;
        }
        json.truncate(end);
        json.push('…');
    }
    format!(
        "`{}` (#{} on {}): {json}",
        reaction.name, reaction.seq, reaction.path
    )
}

/// "error `malformed`: the message is not JSON".
fn describe_error(error: &ErrorReply) -> String {
    format!("error `{}`: {}", error.code, error.message)
}

/// "2 in all: alice {...}, bob {...}".
fn describe_list(list: &PresenceList) -> String {
    let users: Vec<String> = list
        .users
        .iter()
        .map(|(user, view)| format!("{user} {view}"))
        .collect();
    format!("{} in all: {}", list.count, users.join(", "))
}

/// One line per item, indented; " nothing" for none.
fn list(items: &[impl fmt::Display]) -> String {
    if items.is_empty() {
        return " nothing".to_owned();
    }
    let mut out = String::new();
    for item in items {
        let _ = write!(out, "\n  - {item}");
    }
    out
}
