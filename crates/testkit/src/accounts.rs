//! The test accounts provisioned by `cargo xtask servers up`.

/// A pool of pre-provisioned Cyrus users `<prefix>1` ..= `<prefix><size>`, password `testpw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyrusPool {
    /// User name prefix, e.g. `jc`.
    pub prefix: &'static str,
    /// Number of users in the pool.
    pub size: usize,
}

impl CyrusPool {
    /// The `n`-th user of the pool (1-based), e.g. `JMAP_CLIENT.user(3) == "jc3"`.
    pub fn user(&self, n: usize) -> String {
        assert!(
            (1..=self.size).contains(&n),
            "pool {} has users 1..={}",
            self.prefix,
            self.size
        );
        format!("{}{n}", self.prefix)
    }

    /// All users of the pool.
    pub fn users(&self) -> Vec<String> {
        (1..=self.size)
            .map(|n| format!("{}{n}", self.prefix))
            .collect()
    }
}

/// Password of every pool user.
pub const CYRUS_POOL_PASSWORD: &str = "testpw";
/// Password of every Dovecot `t_*` user.
pub const DOVECOT_T_PASSWORD: &str = "testpw";

/// `jc1`..`jc10`: jmap-client tests.
pub const JMAP_CLIENT: CyrusPool = CyrusPool {
    prefix: "jc",
    size: 10,
};
/// `is1`..`is10`: imap-sync tests.
pub const IMAP_SYNC: CyrusPool = CyrusPool {
    prefix: "is",
    size: 10,
};
/// `en1`..`en10`: engine tests.
pub const ENGINE: CyrusPool = CyrusPool {
    prefix: "en",
    size: 10,
};
/// `cl1`..`cl10`: CLI tests.
pub const CLI: CyrusPool = CyrusPool {
    prefix: "cl",
    size: 10,
};
/// `bench1`..`bench3`: benchmarks (and the testkit's own loader tests).
pub const BENCH: CyrusPool = CyrusPool {
    prefix: "bench",
    size: 3,
};

/// `rt1`..`rt6`: real-time, push and event tests.
pub const REALTIME: CyrusPool = CyrusPool {
    prefix: "rt",
    size: 6,
};
/// `dr1`..`dr6`: drafts and mailbox-management tests.
pub const DRAFTS: CyrusPool = CyrusPool {
    prefix: "dr",
    size: 6,
};
/// `at1`..`at6`: attachment and account-edit tests.
pub const ATTACH: CyrusPool = CyrusPool {
    prefix: "at",
    size: 6,
};
/// `th1`..`th6`: threading and search tests.
pub const THREADS: CyrusPool = CyrusPool {
    prefix: "th",
    size: 6,
};
/// `oa1`..`oa6`: OAuth2 tests.
pub const OAUTH: CyrusPool = CyrusPool {
    prefix: "oa",
    size: 6,
};
/// `hz1`..`hz6`: hostile-network and fault-injection tests.
pub const HOSTILE: CyrusPool = CyrusPool {
    prefix: "hz",
    size: 6,
};
/// `fl1`..`fl6`: fleet and service-scale tests.
pub const FLEET: CyrusPool = CyrusPool {
    prefix: "fl",
    size: 6,
};

/// Every Cyrus pool, in provisioning order.
pub const CYRUS_POOLS: &[CyrusPool] = &[
    JMAP_CLIENT,
    IMAP_SYNC,
    ENGINE,
    CLI,
    BENCH,
    REALTIME,
    DRAFTS,
    ATTACH,
    THREADS,
    OAUTH,
    HOSTILE,
    FLEET,
];

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub user: String,
    /// The password (test-only; never a real secret).
    pub password: String,
}

impl Account {
    /// An account from its parts.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Account {
        Account {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The `n`-th user of a Cyrus pool, with the pool password.
    pub fn cyrus_pool(pool: CyrusPool, n: usize) -> Account {
        Account::new(pool.user(n), CYRUS_POOL_PASSWORD)
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}
