-- Several nodes over one database (issue 16).
-- `cluster_nodes`: each running node's lease, renewed every couple of
-- seconds; a node whose lease ran out is dead, and its presence rows are
-- swept. `mqtt_client_id` lets a second node with the same MQTT client id
-- be refused at start-up (the broker would keep kicking one of them off).
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    mqtt_client_id TEXT,
    started_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
-- One row per WebSocket connection that joined a presence channel,
-- anywhere in the cluster: a channel's members are its distinct user ids.
CREATE TABLE presence_members (
    channel TEXT NOT NULL,
    socket_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_info TEXT NOT NULL,
    node_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (channel, socket_id)
);
CREATE INDEX presence_members_user ON presence_members (channel, user_id);
-- Each presence channel's count of announced changes (a member's first
-- connection or last): announcements carry it, so a node that hears of
-- one user's arrival and departure out of order (they were decided on
-- two different nodes) keeps the later.
CREATE TABLE presence_channels (
    channel TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE INDEX presence_members_node ON presence_members (node_id);
-- Which nodes have sockets on which channel, kept only when webhooks are
-- configured: `channel_occupied` when a channel's first node row appears,
-- `channel_vacated` when its last one goes (a dead node's rows are swept),
-- each decided once for the cluster.
CREATE TABLE channel_nodes (
    channel TEXT NOT NULL,
    node_id TEXT NOT NULL,
    PRIMARY KEY (channel, node_id)
);
CREATE INDEX channel_nodes_node ON channel_nodes (node_id);
