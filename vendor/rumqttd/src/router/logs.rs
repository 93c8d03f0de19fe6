use super::Ack;
use bytes::Bytes;
use slab::Slab;
use tracing::{info, trace};

use crate::protocol::{
    matches, ConnAck, ConnAckProperties, PingResp, PubAck, PubComp, PubRec, PubRel, Publish,
    PublishProperties, SubAck, UnsubAck,
};
use crate::router::{DataRequest, FilterIdx, SubscriptionMeter, Waiters};
use crate::{ConnectionId, Filter, Offset, RouterConfig, Topic};

use crate::segments::{CommitLog, Position};
use crate::Storage;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

type PubWithProp = (Publish, Option<PublishProperties>);

#[derive(Clone)]
pub struct PublishData {
    pub publish: Publish,
    pub properties: Option<PublishProperties>,
    pub timestamp: Instant,
}

impl From<PubWithProp> for PublishData {
    fn from((publish, properties): PubWithProp) -> Self {
        PublishData {
            publish,
            properties,
            timestamp: Instant::now(),
        }
    }
}

// TODO: remove this from here
impl Storage for PublishData {
    // TODO: calculate size of publish properties as well!
    fn size(&self) -> usize {
        let publish = &self.publish;
        4 + publish.topic.len() + publish.payload.len()
    }
}

/// Stores 'device' data and 'actions' data in native commitlog
/// organized by subscription filter. Device data is replicated
/// while actions data is not
pub struct DataLog {
    pub config: RouterConfig,
    /// Native commitlog data organized by subscription. Contains
    /// device data and actions data logs.
    ///
    /// Device data is replicated while actions data is not.
    /// Also has waiters used to wake connections/replicator tracker
    /// which are caught up with all the data on 'Filter' and waiting
    /// for new data
    pub native: Slab<Data<PublishData>>,
    /// Map of subscription filter name to filter index
    filter_indexes: HashMap<Filter, FilterIdx>,
    retained_publishes: HashMap<Topic, PublishData>,
    /// List of filters associated with a topic
    publish_filters: HashMap<Topic, Vec<FilterIdx>>,
    /// ANXIN PATCH: the filters with wildcards (`+`, `#`). An exact filter can only
    /// match the identical topic, so matching a topic only needs a scan of these plus
    /// one lookup; upstream scanned every filter (O(connections) per new topic, per new
    /// filter and per subscribe's retained-message read: O(n²) to connect n devices).
    wildcard_filters: Vec<(Filter, FilterIdx)>,
}

/// ANXIN PATCH: whether a filter can match more than the identical topic.
fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// ANXIN PATCH: the filter whose log a subscription reads: `t` for `$share/<group>/t`
/// (as `routing::extract_group`, without allocating), the path itself otherwise.
pub(crate) fn log_filter(path: &str) -> &str {
    path.strip_prefix("$share/")
        .and_then(|s| s.split_once('/'))
        .map_or(path, |(_group, filter)| filter)
}

impl DataLog {
    pub fn new(config: RouterConfig) -> io::Result<DataLog> {
        let mut native = Slab::new();
        let mut filter_indexes = HashMap::new();
        let retained_publishes = HashMap::new();
        let publish_filters = HashMap::new();
        let mut wildcard_filters = Vec::new();

        if let Some(warmup_filters) = config.initialized_filters.clone() {
            for filter in warmup_filters {
                let mut data = Data::new(&filter, &config);
                // ANXIN PATCH: configured filters exist for the router's lifetime.
                data.permanent = true;

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = native.insert(data);
                if has_wildcard(&filter) {
                    wildcard_filters.push((filter.clone(), idx));
                }
                filter_indexes.insert(filter, idx);
            }
        }

        Ok(DataLog {
            config,
            native,
            publish_filters,
            filter_indexes,
            retained_publishes,
            wildcard_filters,
        })
    }

    pub fn meter(&mut self, filter: &str) -> Option<&mut SubscriptionMeter> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        Some(&mut data.meter)
    }

    pub fn waiters(&self, filter: &Filter) -> Option<&Waiters<DataRequest>> {
        self.native
            .get(*self.filter_indexes.get(filter)?)
            .map(|data| &data.waiters)
    }

    /// ANXIN PATCH: `filter` is the subscription's path; the waiter is looked up in the
    /// log it reads (`log_filter`) and matched by path too. Upstream looked `$share/g/t`
    /// up as a filter of its own (no such log: the waiter stayed and revived the
    /// subscription on the next publish), and removed the connection's first waiter in
    /// the log whichever of its subscriptions that was.
    pub fn remove_waiters_for_id(
        &mut self,
        id: ConnectionId,
        filter: &Filter,
    ) -> Option<DataRequest> {
        let data = self
            .native
            .get_mut(*self.filter_indexes.get(log_filter(filter))?)?;
        let waiters = data.waiters.get_mut();

        waiters
            .iter()
            .position(|(conn_id, request)| *conn_id == id && request.filter == *filter)
            .and_then(|index| {
                waiters
                    .swap_remove_back(index)
                    .map(|(_, data_req)| data_req)
            })
    }

    // TODO: Currently returning a Option<Vec> instead of Option<&Vec> due to Rust borrow checker
    // limitation
    pub fn matches(&mut self, topic: &str) -> Option<Vec<usize>> {
        match &self.publish_filters.get(topic) {
            Some(v) => Some(v.to_vec()),
            None => {
                // ANXIN PATCH: the exact filter equal to the topic, then the wildcards.
                let v: Vec<usize> = self
                    .filter_indexes
                    .get(topic)
                    .copied()
                    .into_iter()
                    .chain(
                        self.wildcard_filters
                            .iter()
                            .filter(|(filter, _)| matches(topic, filter))
                            .map(|(_, filter_idx)| *filter_idx),
                    )
                    .collect();

                if !v.is_empty() {
                    self.publish_filters.insert(topic.to_owned(), v.clone());
                }

                Some(v)
            }
        }
    }

    pub fn next_native_offset(&mut self, filter: &str) -> (FilterIdx, Offset) {
        let publish_filters = &mut self.publish_filters;
        let filter_indexes = &mut self.filter_indexes;

        let (filter_idx, data) = match filter_indexes.get(filter) {
            Some(idx) => (*idx, self.native.get(*idx).unwrap()),
            None => {
                let data = Data::new(filter, &self.config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = self.native.insert(data);
                self.filter_indexes.insert(filter.to_owned(), idx);

                // Match new filter to existing topics and add to publish_filters if it matches
                if has_wildcard(filter) {
                    self.wildcard_filters.push((filter.to_owned(), idx));
                    for (topic, filters) in publish_filters.iter_mut() {
                        if matches(topic, filter) {
                            filters.push(idx);
                        }
                    }
                } else if let Some(filters) = publish_filters.get_mut(filter) {
                    // ANXIN PATCH: an exact filter matches only its own topic.
                    filters.push(idx);
                }

                (idx, self.native.get(idx).unwrap())
            }
        };

        (filter_idx, data.log.next_offset())
    }

    /// ANXIN PATCH: one more subscription (of a connection or of a saved persistent
    /// session) reads the log at `filter_idx`; `persistent`: a persistent session's.
    pub fn subscribed(&mut self, filter_idx: FilterIdx, persistent: bool) {
        if let Some(data) = self.native.get_mut(filter_idx) {
            data.subscriptions += 1;
            data.persistent += usize::from(persistent);
        }
    }

    /// ANXIN PATCH: one subscription on the subscription path `path` has ended
    /// (`persistent`: a persistent session's, as counted by `subscribed`). When it
    /// was the filter's last and `free` is set (a clean session's subscription), the
    /// filter is dropped with its log and its entries in the topic cache, and its index
    /// is returned: the caller must drop any request still holding that index (the slab
    /// slot is reused by the next new filter). Filters in `initialized_filters` are kept.
    ///
    /// Upstream never dropped a filter: each one any client ever subscribed to kept its
    /// log (up to `max_segment_size × max_segment_count`) for the life of the process.
    /// A subscriber that comes later starts at the end of the log, so dropping it loses
    /// nothing; retained messages are kept apart (`retained_publishes`) and stay.
    pub fn unsubscribed(&mut self, path: &str, persistent: bool, free: bool) -> Option<FilterIdx> {
        let filter = log_filter(path);
        let idx = *self.filter_indexes.get(filter)?;
        let data = self.native.get_mut(idx)?;
        data.subscriptions = data.subscriptions.saturating_sub(1);
        if persistent {
            data.persistent = data.persistent.saturating_sub(1);
        }
        if !free || data.subscriptions > 0 || data.permanent {
            return None;
        }

        self.native.remove(idx);
        self.filter_indexes.remove(filter);
        if has_wildcard(filter) {
            // A wildcard may be cached under any topic. Rare (a hub's own subscriptions
            // are long-lived), so a scan rather than an index per filter.
            self.wildcard_filters.retain(|(_, i)| *i != idx);
            self.publish_filters.retain(|_, filters| {
                filters.retain(|i| *i != idx);
                !filters.is_empty()
            });
        } else if let Some(filters) = self.publish_filters.get_mut(filter) {
            // An exact filter is cached only under its own topic.
            filters.retain(|i| *i != idx);
            if filters.is_empty() {
                self.publish_filters.remove(filter);
            }
        }
        Some(idx)
    }

    /// ANXIN PATCH: whether `request` still reads the log it was made for. Filters are
    /// dropped (`unsubscribed`) and their slab slots reused: a request left behind by a
    /// bug must not read another filter's messages, nor panic on a missing log.
    pub fn serves(&self, request: &DataRequest) -> bool {
        self.native
            .get(request.filter_idx)
            .is_some_and(|data| data.filter == log_filter(&request.filter))
    }

    /// ANXIN PATCH (tests): the index of `filter`'s log, if it exists.
    #[cfg(test)]
    pub(crate) fn filter_idx(&self, filter: &str) -> Option<FilterIdx> {
        self.filter_indexes.get(filter).copied()
    }

    /// ANXIN PATCH (tests): bytes held by `filter`'s log (as `Storage::size` counts them).
    #[cfg(test)]
    pub(crate) fn log_size(&self, filter: &str) -> Option<u64> {
        let idx = self.filter_indexes.get(filter)?;
        self.native.get(*idx).map(|data| data.log.size())
    }

    /// ANXIN PATCH (tests): the filters cached for `topic`.
    #[cfg(test)]
    pub(crate) fn cached_filters(&self, topic: &str) -> Option<&Vec<FilterIdx>> {
        self.publish_filters.get(topic)
    }

    pub fn native_readv(
        &self,
        filter_idx: FilterIdx,
        offset: Offset,
        len: u64,
    ) -> io::Result<(Position, Vec<(PubWithProp, Offset)>)> {
        // unwrap to get index of `self.native` is fine here, because when a new subscribe packet
        // arrives in `Router::handle_device_payload`, it first calls the function
        // `next_native_offset` which creates a new commitlog if one doesn't exist. So any new
        // reads will definitely happen on a valid filter.
        let data = self.native.get(filter_idx).unwrap();
        let mut o = Vec::new();
        // TODO: `readv` is infallible but its current return type does not
        // reflect that. Consequently, this method is also infallible.
        // Encoding this information is important so that calling function
        // has more information on how this method behaves.
        let next = data.log.readv(offset, len, &mut o)?;

        let now = Instant::now();
        o.retain_mut(|(pubdata, _)| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        let o = o
            .into_iter()
            .map(|(pubdata, offset)| ((pubdata.publish, pubdata.properties), offset))
            .collect();

        Ok((next, o))
    }

    pub fn shadow(&mut self, filter: &str) -> Option<PubWithProp> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        data.log.last().map(|p| (p.publish, p.properties))
    }

    /// This method is called when the subscriber has caught up with the commit log. In which case,
    /// instead of actively checking for commits in each `Router::run_inner` iteration, we instead
    /// wait and only try reading again when new messages have been added to the commit log. This
    /// methods converts a `DataRequest` (which actively reads the commit log in `Router::consume`)
    /// to a `Waiter` (which only reads when notified).
    pub fn park(&mut self, id: ConnectionId, request: DataRequest) {
        // calling unwrap on index here is fine, because only place this function is called is in
        // `Router::consume` method, when the status after reading from commit log of the same
        // filter as `request` is "done", that is, the subscriber has caught up. In other words,
        // there has been atleast 1 call to `native_readv` for the same filter, which means if
        // `native_readv` hasn't paniced, so this won't panic either.
        let data = self.native.get_mut(request.filter_idx).unwrap();
        data.waiters.register(id, request);

        // ANXIN PATCH: once every subscription has read everything, nobody reads those
        // messages again (a later subscriber starts at the end): drop them. Upstream kept
        // each log full to its size for good, however long its readers had been done: a
        // device connected for weeks kept its last 32 KiB of acks, the hub's 64 MiB ring
        // stayed full (up to ≈ 330 MB of RSS) after every burst. Not while a persistent
        // session subscribes (its resume re-reads from its first unacknowledged message),
        // nor for a shared subscription (a group member parks without having read).
        let next = data.log.next_offset();
        let all_done = data.persistent == 0
            && data.waiters.waiters().len() == data.subscriptions
            && data
                .waiters
                .waiters()
                .iter()
                .all(|(_, r)| r.group.is_none() && r.cursor == next);
        if all_done {
            data.log.clear();
        }
    }

    /// Cleanup a connection from all the waiters
    pub fn clean(&mut self, id: ConnectionId) -> Vec<DataRequest> {
        let mut inflight = Vec::new();
        for (_, data) in self.native.iter_mut() {
            inflight.append(&mut data.waiters.remove(id));
        }

        inflight
    }

    pub fn insert_to_retained_publishes(
        &mut self,
        publish: Publish,
        publish_properties: Option<PublishProperties>,
        topic: Topic,
    ) {
        let pub_with_props = (publish, publish_properties);
        self.retained_publishes.insert(topic, pub_with_props.into());
    }

    pub fn remove_from_retained_publishes(&mut self, topic: Topic) {
        self.retained_publishes.remove(&topic);
    }

    pub fn read_retained_messages(&mut self, filter: &str) -> Vec<PubWithProp> {
        trace!(info = "reading retain msg", filter = &filter);
        let now = Instant::now();

        // ANXIN PATCH: an exact filter reads (and expires) only its own topic instead of
        // scanning every retained message on every subscribe.
        if !has_wildcard(filter) {
            let Some(pubdata) = self.retained_publishes.get_mut(filter) else {
                return Vec::new();
            };
            if let Some(interval) = pubdata
                .properties
                .as_mut()
                .and_then(|p| p.message_expiry_interval.as_mut())
            {
                let time_spent = (now - pubdata.timestamp).as_secs() as u32;
                if time_spent >= *interval {
                    self.retained_publishes.remove(filter);
                    return Vec::new();
                }
                *interval -= time_spent;
            }
            return vec![(pubdata.publish.clone(), pubdata.properties.clone())];
        }

        // discard expired retained messages
        self.retained_publishes.retain(|_, pubdata| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        self.retained_publishes
            .iter()
            .filter(|(topic, _)| matches(topic, filter))
            .map(|(_, p)| (p.publish.clone(), p.properties.clone()))
            .collect()
    }
}

pub struct Data<T> {
    filter: Filter,
    pub log: CommitLog<T>,
    pub waiters: Waiters<DataRequest>,
    meter: SubscriptionMeter,
    /// ANXIN PATCH: subscriptions reading this log, of live connections and of saved
    /// persistent sessions (`DataLog::subscribed` / `unsubscribed`).
    subscriptions: usize,
    /// ANXIN PATCH: how many of them are persistent sessions' (`DataLog::park`).
    persistent: usize,
    /// ANXIN PATCH: never dropped (`initialized_filters`).
    permanent: bool,
    /// ANXIN PATCH: a small log (`RouterConfig::exact_filter_segment`) keeps its own copy
    /// of each message's topic and payload (`append_publish`).
    own_copy: bool,
}

impl<T> Data<T>
where
    T: Storage + Clone,
{
    pub fn new(filter: &str, router_config: &RouterConfig) -> Data<T> {
        let mut max_segment_size = router_config.max_segment_size;
        let mut max_mem_segments = router_config.max_segment_count;

        // ANXIN PATCH: a small log for an exact filter (see `RouterConfig::exact_filter_segment`).
        let mut own_copy = false;
        if let (false, Some(exact)) = (has_wildcard(filter), &router_config.exact_filter_segment) {
            max_segment_size = exact.max_segment_size;
            max_mem_segments = exact.max_segment_count;
            own_copy = true;
        }

        // Override segment config for selected filter
        if let Some(config) = &router_config.custom_segment {
            for (f, segment_config) in config {
                if matches(filter, f) {
                    info!("Overriding segment config for filter: {}", filter);
                    max_segment_size = segment_config.max_segment_size;
                    max_mem_segments = segment_config.max_segment_count;
                }
            }
        }

        // max_segment_size: usize, max_mem_segments: usize
        let log = CommitLog::new(max_segment_size, max_mem_segments).unwrap();

        let waiters = Waiters::with_capacity(10);
        let metrics = SubscriptionMeter::default();
        Data {
            filter: filter.to_owned(),
            log,
            waiters,
            meter: metrics,
            subscriptions: 0,
            persistent: 0,
            permanent: false,
            own_copy,
        }
    }

    /// Writes to all the filters that are mapped to this publish topic
    /// and wakes up consumers that are matching this topic (if they exist)
    pub fn append(
        &mut self,
        item: T,
        notifications: &mut VecDeque<(ConnectionId, DataRequest)>,
    ) -> (Offset, &Filter) {
        let size = item.size();
        let offset = self.log.append(item);
        if let Some(mut parked) = self.waiters.take() {
            notifications.append(&mut parked);
        }

        self.meter.count += 1;
        self.meter.total_size += size;

        (offset, &self.filter)
    }
}

impl Data<PublishData> {
    /// ANXIN PATCH: append a publish (as `append`). A message's topic and payload are
    /// slices of the publisher's network read buffer (≈ 10 KiB blocks, shared by every
    /// packet read into them), so each message a log keeps holds its whole block. For the
    /// ring of a wildcard filter that is the data in flight anyway, but a small log keeps
    /// the latest few messages to its subscriber for as long as that subscriber is
    /// connected, possibly days, each from a different block of the hub's connection: it
    /// copies the message instead (a few hundred bytes; the hub's acks and error reports).
    pub fn append_publish(
        &mut self,
        publish: &Publish,
        properties: &Option<PublishProperties>,
        notifications: &mut VecDeque<(ConnectionId, DataRequest)>,
    ) -> (Offset, &Filter) {
        let mut publish = publish.clone();
        if self.own_copy {
            publish.topic = Bytes::copy_from_slice(&publish.topic);
            publish.payload = Bytes::copy_from_slice(&publish.payload);
        }
        self.append((publish, properties.clone()).into(), notifications)
    }
}

/// Acks log for a subscription
#[derive(Debug)]
pub struct AckLog {
    // Committed acks per connection. First pkid, last pkid, data
    committed: VecDeque<Ack>,
    // Recorded qos 2 publishes
    recorded: VecDeque<(Publish, Option<PublishProperties>)>,
}

impl AckLog {
    /// New log
    pub fn new() -> AckLog {
        AckLog {
            committed: VecDeque::with_capacity(100),
            recorded: VecDeque::with_capacity(100),
        }
    }

    pub fn connack(&mut self, id: ConnectionId, ack: ConnAck, props: Option<ConnAckProperties>) {
        let ack = Ack::ConnAck(id, ack, props);
        self.committed.push_back(ack);
    }

    pub fn suback(&mut self, ack: SubAck) {
        let ack = Ack::SubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn puback(&mut self, ack: PubAck) {
        let ack = Ack::PubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn pubrec(&mut self, publish: Publish, props: Option<PublishProperties>, ack: PubRec) {
        let ack = Ack::PubRec(ack);
        self.recorded.push_back((publish, props));
        self.committed.push_back(ack);
    }

    pub fn pubrel(&mut self, ack: PubRel) {
        let ack = Ack::PubRel(ack);
        self.committed.push_back(ack);
    }

    pub fn pubcomp(&mut self, ack: PubComp) -> Option<(Publish, Option<PublishProperties>)> {
        let ack = Ack::PubComp(ack);
        self.committed.push_back(ack);
        self.recorded.pop_front()
    }

    pub fn pingresp(&mut self, ack: PingResp) {
        let ack = Ack::PingResp(ack);
        self.committed.push_back(ack);
    }

    pub fn unsuback(&mut self, ack: UnsubAck) {
        let ack = Ack::UnsubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn readv(&mut self) -> &mut VecDeque<Ack> {
        &mut self.committed
    }
}

#[cfg(test)]
mod test {
    use super::DataLog;
    use crate::protocol::Publish;
    use crate::router::shared_subs::Strategy;
    use crate::router::DataRequest;
    use crate::{RouterConfig, SegmentConfig};
    use bytes::Bytes;
    use std::collections::VecDeque;

    /// ANXIN PATCH: exact and wildcard filters are found whatever the order of
    /// subscribe and first publish, and an exact filter never matches another topic.
    #[test]
    fn exact_and_wildcard_filters_match_in_any_order() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            exact_filter_segment: None,
        };
        let mut data = DataLog::new(config).unwrap();
        let (wild, _) = data.next_native_offset("d/+/events");
        let (exact_a, _) = data.next_native_offset("d/a/events");
        // First publish after both subscriptions.
        let mut m = data.matches("d/a/events").unwrap();
        m.sort();
        let mut want = vec![wild, exact_a];
        want.sort();
        assert_eq!(m, want);
        // Topic seen first, exact filter added later: appended to the cached entry.
        assert_eq!(data.matches("d/b/events").unwrap(), vec![wild]);
        let (exact_b, _) = data.next_native_offset("d/b/events");
        let mut m = data.matches("d/b/events").unwrap();
        m.sort();
        let mut want = vec![wild, exact_b];
        want.sort();
        assert_eq!(m, want);
        // Neither exact filter matches a third device's topic, nor another kind.
        assert_eq!(data.matches("d/c/events").unwrap(), vec![wild]);
        assert!(data.matches("d/a/ack").unwrap().is_empty());
    }

    fn small_exact_logs() -> RouterConfig {
        RouterConfig {
            max_segment_size: 1024 * 1024,
            max_connections: 10,
            max_segment_count: 4,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: Some(vec!["d/hub/ack".into()]),
            shared_subscriptions_strategy: Strategy::RoundRobin,
            exact_filter_segment: Some(SegmentConfig {
                max_segment_size: 1024,
                max_segment_count: 2,
            }),
        }
    }

    /// ANXIN PATCH: a request left behind for a dropped filter is not served by the filter
    /// that takes its slot; only the last clean subscription drops a filter, and never a
    /// configured one.
    #[test]
    fn a_request_for_a_dropped_filter_is_not_served_by_the_next_filter_in_its_slot() {
        let mut data = DataLog::new(small_exact_logs()).unwrap();
        let (idx, cursor) = data.next_native_offset("d/a/ack");
        data.subscribed(idx, false);
        data.subscribed(idx, false);
        let request = DataRequest {
            filter: "d/a/ack".into(),
            filter_idx: idx,
            qos: 1,
            cursor,
            read_count: 0,
            max_count: 100,
            forward_retained: false,
            group: None,
        };
        assert!(data.serves(&request));
        assert_eq!(
            data.unsubscribed("d/a/ack", false, true),
            None,
            "one subscription left"
        );
        assert_eq!(data.unsubscribed("d/a/ack", false, true), Some(idx));
        assert!(!data.serves(&request));

        let (reused, _) = data.next_native_offset("d/b/ack");
        assert_eq!(reused, idx, "the slot is reused");
        assert!(!data.serves(&request));
        let shared = DataRequest {
            filter: "$share/g/d/b/ack".into(),
            filter_idx: reused,
            ..request.clone()
        };
        assert!(data.serves(&shared));

        // A persistent session's unsubscribe does not drop; a configured filter never goes.
        data.subscribed(reused, true);
        assert_eq!(data.unsubscribed("$share/g/d/b/ack", true, false), None);
        let (hub, _) = data.next_native_offset("d/hub/ack");
        data.subscribed(hub, false);
        assert_eq!(data.unsubscribed("d/hub/ack", false, true), None);
        assert_eq!(data.next_native_offset("d/hub/ack").0, hub);
    }

    /// ANXIN PATCH: a small log does not hold on to the publisher's read buffer.
    #[test]
    fn a_small_log_keeps_its_own_copy_of_each_message() {
        let mut data = DataLog::new(small_exact_logs()).unwrap();
        let (exact, _) = data.next_native_offset("d/a/ack");
        let (wildcard, _) = data.next_native_offset("d/+/ack");
        // As read from the network: a slice of a larger block.
        let block = Bytes::from(vec![b'x'; 10 * 1024]);
        let mut publish = Publish::new("d/a/ack", "", false);
        publish.payload = block.slice(0..100);
        let mut notifications = VecDeque::new();
        for idx in [exact, wildcard] {
            data.native[idx].append_publish(&publish, &None, &mut notifications);
        }
        let stored = |idx| {
            let (_, read) = data.native_readv(idx, (0, 0), 10).unwrap();
            read.into_iter().next().unwrap().0 .0.payload
        };
        let (own, shared) = (stored(exact), stored(wildcard));
        assert_eq!(own, publish.payload);
        assert_ne!(own.as_ptr(), block.as_ptr(), "copied out of the block");
        assert_eq!(shared.as_ptr(), block.as_ptr(), "a ring shares it");
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_topic_subscription() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            exact_filter_segment: None,
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("topic/a");
        data.matches("topic/a");

        data.next_native_offset("topic/+");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 2);
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_publish() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            exact_filter_segment: None,
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("+/+");

        data.matches("topic/a");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 1);
    }

    //     #[test]
    //     fn appends_are_written_to_correct_commitlog() {
    //         pretty_env_logger::init();
    //         let config = RouterConfig {
    //             instant_ack: true,
    //             max_segment_size: 1024,
    //             max_connections: 10,
    //             max_mem_segments: 10,
    //             max_disk_segments: 0,
    //             max_read_len: 1024,
    //             log_dir: None,
    //             dynamic_log: true,
    //         };

    //         let mut data = DataLog::new(config).unwrap();
    //         data.next_native_offset("/devices/2321/actions");
    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/events/imu/jsonarray", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }

    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/actions", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }
    //     }
}
