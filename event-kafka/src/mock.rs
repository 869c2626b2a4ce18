//! An in-process Kafka cluster (librdkafka's mock cluster) for tests: no server, no network
//! beyond loopback.

use std::sync::mpsc;

pub use rdkafka::types::RDKafkaRespErr;

/// What the cluster's thread is asked to do, and where to answer.
enum Request {
    /// Create a topic of this many partitions.
    Topic(String, u32, mpsc::Sender<Result<(), String>>),
    /// Answer the next this many `JoinGroup` requests with this error.
    FailJoins(RDKafkaRespErr, usize, mpsc::Sender<()>),
}

/// A running mock cluster. It stops when this value is dropped.
///
/// The cluster lives on a thread of its own (librdkafka's handle is not `Send`), so this value
/// can be shared between tasks.
pub struct MockKafka {
    bootstrap: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockKafka {
    /// Starts a mock cluster of `brokers` brokers.
    ///
    /// # Panics
    ///
    /// If librdkafka cannot create the cluster.
    pub fn start(brokers: i32) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (requests, incoming) = mpsc::channel::<Request>();
        let thread = std::thread::spawn(move || {
            let cluster = rdkafka::mocking::MockCluster::new(brokers)
                .expect("librdkafka creates a mock cluster");
            let _ = ready_tx.send(cluster.bootstrap_servers());
            // Until the handle is dropped.
            while let Ok(request) = incoming.recv() {
                match request {
                    Request::Topic(topic, partitions, reply) => {
                        let created = cluster
                            .create_topic(&topic, partitions as i32, 1)
                            .map_err(|e| e.to_string());
                        let _ = reply.send(created);
                    }
                    Request::FailJoins(error, times, reply) => {
                        cluster.request_errors(
                            rdkafka::types::RDKafkaApiKey::JoinGroup,
                            &vec![error; times],
                        );
                        let _ = reply.send(());
                    }
                }
            }
            drop(cluster);
        });
        let bootstrap = ready_rx.recv().expect("the mock cluster started");
        MockKafka {
            bootstrap,
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    /// Settings for a transport on this cluster: its bootstrap servers, and topics created
    /// through the mock's own API (the mock cluster does not answer the admin API's
    /// `CreateTopics`).
    pub fn config(&self) -> crate::KafkaConfig {
        let requests = std::sync::Mutex::new(self.requests.clone().expect("running"));
        crate::KafkaConfig::new(self.bootstrap.clone()).create_topics_with(std::sync::Arc::new(
            move |topic: &str, partitions: u32| {
                let (reply, answer) = mpsc::channel();
                requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .send(Request::Topic(topic.to_owned(), partitions, reply))
                    .map_err(|_| "the mock cluster stopped".to_owned())?;
                answer
                    .recv()
                    .map_err(|_| "the mock cluster stopped".to_owned())?
            },
        ))
    }

    /// The cluster's `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Answers the next `times` `JoinGroup` requests with `error`, as a broker refusing a
    /// member would (`RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT`: a session timeout outside
    /// its bounds, which the mock itself does not check).
    ///
    /// # Panics
    ///
    /// If the cluster stopped.
    pub fn fail_joins(&self, error: RDKafkaRespErr, times: usize) {
        let (reply, done) = mpsc::channel();
        self.requests
            .as_ref()
            .expect("running")
            .send(Request::FailJoins(error, times, reply))
            .expect("the mock cluster runs");
        done.recv().expect("the mock cluster runs");
    }
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
