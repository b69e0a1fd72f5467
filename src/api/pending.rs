//! Answers owed: what a request gets (now, or later), and one record per
//! waiting connection whatever it waits for (a service to settle, a restore
//! report, an exec, a log stream), so a client that goes away is cleaned up
//! in one place.

use super::http::Response;
use mio::Token;

/// What handling a request produced.
#[derive(Debug)]
pub(crate) enum Answer {
    Now(Response),
    /// Answered when `Await` happens.
    Wait(Await),
    /// A chunked log stream: `body` first, then lines as the service writes
    /// them, until it is deleted or the client goes away.
    Follow {
        name: String,
        body: Vec<u8>,
    },
    /// Already written (the 202 before a shutdown).
    Sent,
}

/// What a start/stop/delete waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoalKind {
    Start,
    Stop,
    Delete,
}

/// What a waiting connection waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Await {
    /// Service `name` to settle.
    Goal { name: String, kind: GoalKind },
    /// The running restore's report.
    Restore,
    /// Exec `id` to finish.
    Exec(u64),
    /// A `follow=true` log stream of service `name` (answered as it goes).
    Follow(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub conn: Token,
    /// The request asked to keep the connection open.
    pub keep_alive: bool,
    pub wait: Await,
}

/// Every waiting connection, in the order the requests arrived (HTTP/1.1
/// answers in order, so a connection waits for one thing at a time).
#[derive(Default)]
pub(crate) struct Pendings {
    list: Vec<Pending>,
}

impl Pendings {
    pub(crate) fn add(&mut self, p: Pending) {
        self.list.retain(|q| q.conn != p.conn);
        self.list.push(p);
    }

    /// Removes and returns the waits `pick` selects, oldest first.
    pub(crate) fn take(&mut self, pick: impl Fn(&Await) -> bool) -> Vec<Pending> {
        let (mine, rest) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|p| pick(&p.wait));
        self.list = rest;
        mine
    }

    /// The connection went away (or was answered): its wait, if any.
    pub(crate) fn remove(&mut self, conn: Token) -> Option<Pending> {
        let i = self.list.iter().position(|p| p.conn == conn)?;
        Some(self.list.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(conn: usize, wait: Await) -> Pending {
        Pending {
            conn: Token(conn),
            keep_alive: true,
            wait,
        }
    }

    #[test]
    fn waits_are_taken_by_kind_in_arrival_order() {
        let mut ps = Pendings::default();
        let goal = |n: &str| Await::Goal {
            name: n.into(),
            kind: GoalKind::Start,
        };
        ps.add(p(1, goal("web")));
        ps.add(p(2, Await::Restore));
        ps.add(p(3, goal("web")));
        ps.add(p(4, goal("db")));
        let web = ps.take(|w| matches!(w, Await::Goal { name, .. } if name == "web"));
        assert_eq!(
            web.iter().map(|p| p.conn).collect::<Vec<_>>(),
            [Token(1), Token(3)]
        );
        assert_eq!(ps.remove(Token(2)).map(|p| p.wait), Some(Await::Restore));
        assert_eq!(ps.remove(Token(2)), None, "removed once");
        let rest = ps.take(|_| true);
        assert_eq!(rest, [p(4, goal("db"))]);
    }
}
