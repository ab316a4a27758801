//! Children, from the engine's request to the program's exec: what to spawn ([`spec`]), the
//! plan made from it before the clone ([`plan`]), the engine's side of a spawn (the pipes,
//! the clone, id maps and cgroup placement, the outcome read from the report pipe:
//! [`launch`]), the child's own steps between `clone3` and `execve` ([`exec`]), and the
//! helper process that clones for the engine ([`spawner`], its wire format in
//! [`spawner_wire`]).

pub(crate) mod exec;
pub(crate) mod launch;
pub(crate) mod plan;
pub(crate) mod spawner;
mod spawner_wire;
pub(crate) mod spec;

pub use exec::ChildStep;
pub use spawner::Spawner;
pub use spec::{Handed, IdMap, Isolation, Namespaces, Placement, Program, SpawnSpec};
