//! Authorized operations (KIP-430). broker-sim has no authorizer, so, as Kafka without one,
//! every operation a resource type supports is authorized; responses carry them as a bit set
//! (bit n = ACL operation code n) when the request asks for them, and `i32::MIN` otherwise.

/// ACL operation codes (Kafka's `AclOperation`).
mod op {
    pub(super) const READ: u8 = 3;
    pub(super) const WRITE: u8 = 4;
    pub(super) const CREATE: u8 = 5;
    pub(super) const DELETE: u8 = 6;
    pub(super) const ALTER: u8 = 7;
    pub(super) const DESCRIBE: u8 = 8;
    pub(super) const CLUSTER_ACTION: u8 = 9;
    pub(super) const DESCRIBE_CONFIGS: u8 = 10;
    pub(super) const ALTER_CONFIGS: u8 = 11;
    pub(super) const IDEMPOTENT_WRITE: u8 = 12;
}

/// "Not asked for" in a response's authorized-operations field.
pub(crate) const NOT_REQUESTED: i32 = i32::MIN;

const fn bits(ops: &[u8]) -> i32 {
    let mut out = 0i32;
    let mut i = 0;
    while i < ops.len() {
        out |= 1 << ops[i];
        i += 1;
    }
    out
}

/// Everything a topic supports.
pub(crate) const TOPIC: i32 = bits(&[
    op::READ,
    op::WRITE,
    op::CREATE,
    op::DELETE,
    op::ALTER,
    op::DESCRIBE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
]);

/// Everything a consumer group supports.
pub(crate) const GROUP: i32 = bits(&[op::READ, op::DELETE, op::DESCRIBE]);

/// Everything the cluster supports.
pub(crate) const CLUSTER: i32 = bits(&[
    op::CREATE,
    op::ALTER,
    op::DESCRIBE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
]);

/// `ops` if the request asked for them, else [`NOT_REQUESTED`].
pub(crate) fn if_asked(asked: bool, ops: i32) -> i32 {
    if asked {
        ops
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_set_one_bit_per_operation_code() {
        assert_eq!(GROUP, (1 << 3) | (1 << 6) | (1 << 8));
        assert_eq!(TOPIC.count_ones(), 8);
        assert_eq!(CLUSTER.count_ones(), 7);
        assert_eq!(if_asked(false, TOPIC), i32::MIN);
    }
}
