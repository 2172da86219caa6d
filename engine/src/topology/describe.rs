//! `Topology::describe()`: sub-topologies, nodes, stores and topics, printed the way Kafka
//! Streams prints them.

use super::{NodeKind, Topology};

/// One node of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDescription {
    /// A source and the topics it reads.
    Source {
        /// Node name.
        name: String,
        /// Topics.
        topics: Vec<String>,
        /// Children.
        successors: Vec<String>,
    },
    /// A processor and its stores.
    Processor {
        /// Node name.
        name: String,
        /// Stores it uses.
        stores: Vec<String>,
        /// Children.
        successors: Vec<String>,
        /// Parents.
        predecessors: Vec<String>,
    },
    /// A sink and its topic (`None`: chosen per record).
    Sink {
        /// Node name.
        name: String,
        /// Topic.
        topic: Option<String>,
        /// Parents.
        predecessors: Vec<String>,
    },
}

/// One sub-topology of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtopologyDescription {
    /// Its number.
    pub id: u32,
    /// Its nodes, in the order they were added.
    pub nodes: Vec<NodeDescription>,
}

/// A topology's structure (Kafka Streams' `TopologyDescription`); `Display` prints it in
/// Kafka Streams' format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// Sub-topologies, by number.
    pub subtopologies: Vec<SubtopologyDescription>,
}

impl Topology {
    /// The topology's sub-topologies, nodes, stores and topics.
    pub fn describe(&self) -> TopologyDescription {
        let subs = self.subtopology_of_nodes();
        let names = |ids: &[usize]| ids.iter().map(|&i| self.nodes[i].name.clone()).collect::<Vec<_>>();
        let count = subs.iter().max().map_or(0, |m| m + 1);
        let subtopologies = (0..count)
            .map(|id| SubtopologyDescription {
                id,
                nodes: self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| subs[*i] == id)
                    .map(|(_, n)| match &n.kind {
                        NodeKind::Source { topics } => NodeDescription::Source {
                            name: n.name.clone(),
                            topics: topics.clone(),
                            successors: names(&n.children),
                        },
                        NodeKind::Processor => NodeDescription::Processor {
                            name: n.name.clone(),
                            stores: n.stores.clone(),
                            successors: names(&n.children),
                            predecessors: names(&n.parents),
                        },
                        NodeKind::Sink { topic } => NodeDescription::Sink {
                            name: n.name.clone(),
                            topic: topic.clone(),
                            predecessors: names(&n.parents),
                        },
                    })
                    .collect(),
            })
            .collect();
        TopologyDescription { subtopologies }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl std::fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Topologies:")?;
        for sub in &self.subtopologies {
            writeln!(f, "   Sub-topology: {}", sub.id)?;
            for node in &sub.nodes {
                match node {
                    NodeDescription::Source { name, topics, successors } => {
                        writeln!(f, "    Source: {name} (topics: [{}])", topics.join(", "))?;
                        writeln!(f, "      --> {}", list(successors))?;
                    }
                    NodeDescription::Processor { name, stores, successors, predecessors } => {
                        writeln!(f, "    Processor: {name} (stores: [{}])", stores.join(", "))?;
                        writeln!(f, "      --> {}", list(successors))?;
                        writeln!(f, "      <-- {}", list(predecessors))?;
                    }
                    NodeDescription::Sink { name, topic, predecessors } => {
                        match topic {
                            Some(t) => writeln!(f, "    Sink: {name} (topic: {t})")?,
                            None => writeln!(f, "    Sink: {name} (topic: chosen per record)")?,
                        }
                        writeln!(f, "      <-- {}", list(predecessors))?;
                    }
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
