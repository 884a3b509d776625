//! Real WASM execution with the `wasmi` interpreter: modules are validated and
//! compiled once (`wasm.validate`), each task runs in its own store with a fuel
//! budget (`wasm.execute`), and the fuel it burned is accounted (`wasm.meter`).
//!
//! Every bundled program exports `run: (i64) -> i64` and, where it has one, its
//! linear memory as `memory`.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmi::core::TrapCode;
use wasmi::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};
use zs_observe::instrumented;

/// Linear memory a task may hold at most (the seed's 128 MB task limit).
pub(crate) const MEMORY_LIMIT_BYTES: usize = 128 * 1024 * 1024;

/// `run(n)` returns 1 + 2 + ... + n, in a loop of n iterations.
const SUM_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "run") (param $n i64) (result i64)
    (local $i i64) (local $acc i64)
    (block $done
      (loop $next
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (local.set $acc (i64.add (local.get $acc) (local.get $i)))
        (br $next)))
    (local.get $acc)))"#;

/// `run(n)` executes `unreachable`: a trap.
const TRAP_WAT: &str = r#"(module
  (func (export "run") (param $n i64) (result i64)
    unreachable))"#;

/// `run(n)` loops forever: only the fuel budget stops it.
const SPIN_WAT: &str = r#"(module
  (func (export "run") (param $n i64) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))"#;

/// `run(n)` grows its memory by n pages and returns the page count after.
const GROW_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "run") (param $n i64) (result i64)
    (drop (memory.grow (i32.wrap_i64 (local.get $n))))
    (i64.extend_i32_u (memory.size))))"#;

/// The programs bundled with the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Program {
    /// Sums 1..=n in a loop.
    Sum,
    /// Traps with `unreachable`.
    Trap,
    /// Loops until it runs out of fuel.
    Spin,
    /// Grows memory by n pages.
    Grow,
}

impl Program {
    /// Every bundled program.
    pub(crate) const ALL: [Program; 4] =
        [Program::Sum, Program::Trap, Program::Spin, Program::Grow];

    fn wat(self) -> &'static str {
        match self {
            Program::Sum => SUM_WAT,
            Program::Trap => TRAP_WAT,
            Program::Spin => SPIN_WAT,
            Program::Grow => GROW_WAT,
        }
    }

    fn index(self) -> usize {
        match self {
            Program::Sum => 0,
            Program::Trap => 1,
            Program::Spin => 2,
            Program::Grow => 3,
        }
    }
}

/// What a successful run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Execution {
    /// The value `run` returned.
    pub(crate) value: i64,
    /// Fuel the run consumed (its cost).
    pub(crate) fuel_used: u64,
    /// Linear memory after the run, in bytes.
    pub(crate) memory_bytes: u64,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecError {
    /// The module failed validation or compilation.
    Invalid(String),
    /// The module trapped (`code` names the trap).
    Trap {
        /// The trap, e.g. `unreachable`.
        code: String,
        /// Fuel consumed before the trap.
        fuel_used: u64,
        /// Linear memory at the trap, in bytes.
        memory_bytes: u64,
    },
    /// The fuel budget ran out: the task's timeout.
    OutOfFuel {
        /// The budget, all of it consumed.
        fuel_used: u64,
        /// Linear memory when the fuel ran out, in bytes.
        memory_bytes: u64,
    },
}

impl ExecError {
    /// The `exit` label of `zerostate_wasm_exit_codes_total`.
    pub(crate) fn exit_label(&self) -> &'static str {
        match self {
            ExecError::Invalid(_) => "invalid",
            ExecError::Trap { .. } => "trap",
            ExecError::OutOfFuel { .. } => "out_of_fuel",
        }
    }

    /// Fuel consumed before the failure.
    pub(crate) fn fuel_used(&self) -> u64 {
        match self {
            ExecError::Invalid(_) => 0,
            ExecError::Trap { fuel_used, .. } | ExecError::OutOfFuel { fuel_used, .. } => {
                *fuel_used
            }
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Invalid(e) => write!(f, "invalid module: {e}"),
            ExecError::Trap {
                code, fuel_used, ..
            } => {
                write!(f, "trap `{code}` after {fuel_used} fuel")
            }
            ExecError::OutOfFuel { fuel_used, .. } => {
                write!(f, "out of fuel after {fuel_used} units")
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// A validated, compiled module and the SHA-256 of its binary.
#[derive(Debug)]
pub(crate) struct LoadedModule {
    module: Module,
    /// Hex SHA-256 of the module binary.
    pub(crate) hash: String,
}

/// The node's WASM runtime: one engine, the bundled programs compiled once.
#[derive(Debug)]
pub(crate) struct Runtime {
    engine: Engine,
    programs: Vec<LoadedModule>,
    /// Host time added to every run (the `--slow-wasm-ms` fault).
    host_delay: Duration,
}

struct TaskState {
    limits: StoreLimits,
}

impl Runtime {
    /// An engine with fuel metering, and every bundled program validated and compiled.
    pub(crate) fn new() -> Result<Self, ExecError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let mut programs = Vec::with_capacity(Program::ALL.len());
        for program in Program::ALL {
            let wasm = wat::parse_str(program.wat())
                .map_err(|e| ExecError::Invalid(format!("{program:?}: {e}")))?;
            programs.push(load(&engine, &wasm)?);
        }
        Ok(Runtime {
            engine,
            programs,
            host_delay: Duration::ZERO,
        })
    }

    /// Adds `delay` of host time to every run: a slow host call, for driving the
    /// task-duration alerts (`--slow-wasm-ms`).
    pub(crate) fn with_host_delay(mut self, delay: Duration) -> Self {
        self.host_delay = delay;
        self
    }

    /// Validates and compiles a module binary (tasks that bring their own module
    /// arrive with the P2P layer; tests use it now).
    #[cfg(test)]
    pub(crate) fn load(&self, wasm: &[u8]) -> Result<LoadedModule, ExecError> {
        load(&self.engine, wasm)
    }

    /// The compiled bundled program.
    pub(crate) fn program(&self, program: Program) -> &LoadedModule {
        &self.programs[program.index()]
    }

    /// Runs `run(input)` of `module` in a fresh store with `fuel` units of fuel.
    #[instrumented(
        span = "wasm.execute",
        histogram = "zerostate_wasm_execution_duration_seconds",
        counter = "zerostate_tasks_executed_total",
        in_flight = "zerostate_tasks_executing",
        fields(task.id = task_id, wasm.fuel_limit = fuel, wasm.module_hash = module.hash.as_str()),
        skip(self, module),
        err(level = "warn")
    )]
    pub(crate) fn execute(
        &self,
        task_id: u64,
        module: &LoadedModule,
        input: i64,
        fuel: u64,
    ) -> Result<Execution, ExecError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT_BYTES)
            .build();
        let mut store = Store::new(&self.engine, TaskState { limits });
        store.limiter(|state| &mut state.limits);
        store
            .set_fuel(fuel)
            .map_err(|e| ExecError::Invalid(e.to_string()))?;
        let outcome = Linker::<TaskState>::new(&self.engine)
            .instantiate(&mut store, &module.module)
            .and_then(|pre| pre.start(&mut store))
            .map(|instance| {
                let memory = instance.get_memory(&store, "memory");
                let result = instance
                    .get_typed_func::<i64, i64>(&store, "run")
                    .and_then(|run| run.call(&mut store, input));
                (memory, result)
            });
        let (memory, result) = match outcome {
            Ok(pair) => pair,
            Err(e) => (None, Err(e)),
        };
        if !self.host_delay.is_zero() {
            std::thread::sleep(self.host_delay);
        }
        let memory_bytes = memory.map_or(0, |m| m.data_size(&store) as u64);
        let fuel_used = meter(&store, fuel);
        metrics::histogram!("zerostate_wasm_memory_bytes").record(memory_bytes as f64);
        let result = match result {
            Ok(value) => Ok(Execution {
                value,
                fuel_used,
                memory_bytes,
            }),
            Err(e) => Err(match e.as_trap_code() {
                Some(TrapCode::OutOfFuel) => ExecError::OutOfFuel {
                    fuel_used,
                    memory_bytes,
                },
                Some(code) => ExecError::Trap {
                    code: trap_name(code).to_owned(),
                    fuel_used,
                    memory_bytes,
                },
                None => ExecError::Trap {
                    code: e.to_string(),
                    fuel_used,
                    memory_bytes,
                },
            }),
        };
        let exit = match &result {
            Ok(_) => "ok",
            Err(e) => e.exit_label(),
        };
        if let Err(ExecError::OutOfFuel { fuel_used, .. }) = &result {
            // The run was stopped by its budget: its cost is capped there.
            metrics::histogram!("zerostate_task_cost_units", "type" => "capped")
                .record(*fuel_used as f64);
        }
        metrics::counter!("zerostate_wasm_exit_codes_total", "exit" => exit).increment(1);
        result
    }
}

/// Validates (`wasm.validate`) and compiles a module binary.
#[instrumented(span = "wasm.validate", fields(wasm.size_bytes = wasm.len()), skip(engine, wasm), err(level = "warn"))]
fn load(engine: &Engine, wasm: &[u8]) -> Result<LoadedModule, ExecError> {
    Module::validate(engine, wasm).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let module = Module::new(engine, wasm).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let digest: [u8; 32] = Sha256::digest(wasm).into();
    Ok(LoadedModule {
        module,
        hash: hex(&digest),
    })
}

/// Fuel accounting (`wasm.meter`): what the run consumed of its budget, recorded as
/// the task's actual cost next to its budget.
#[instrumented(span = "wasm.meter", fields(wasm.fuel_limit = limit), skip(store, limit))]
fn meter(store: &Store<TaskState>, limit: u64) -> u64 {
    let remaining = store.get_fuel().unwrap_or(0);
    let used = limit.saturating_sub(remaining);
    metrics::histogram!("zerostate_task_cost_units", "type" => "estimated").record(limit as f64);
    metrics::histogram!("zerostate_task_cost_units", "type" => "actual").record(used as f64);
    tracing::debug!(fuel.used = used, fuel.remaining = remaining, "metered");
    used
}

fn trap_name(code: TrapCode) -> &'static str {
    match code {
        TrapCode::UnreachableCodeReached => "unreachable",
        TrapCode::MemoryOutOfBounds => "memory_out_of_bounds",
        TrapCode::TableOutOfBounds => "table_out_of_bounds",
        TrapCode::IndirectCallToNull => "indirect_call_to_null",
        TrapCode::IntegerDivisionByZero => "integer_division_by_zero",
        TrapCode::IntegerOverflow => "integer_overflow",
        TrapCode::BadConversionToInteger => "bad_conversion_to_integer",
        TrapCode::StackOverflow => "stack_overflow",
        TrapCode::BadSignature => "bad_signature",
        TrapCode::OutOfFuel => "out_of_fuel",
        TrapCode::GrowthOperationLimited => "growth_limited",
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Size of one WASM page.
    const PAGE_BYTES: u64 = 64 * 1024;

    fn runtime() -> Runtime {
        Runtime::new().expect("bundled programs compile")
    }

    #[test]
    fn sum_returns_the_sum_and_exact_fuel() {
        let rt = runtime();
        let sum = rt.program(Program::Sum);
        let a = rt.execute(1, sum, 1_000, 1_000_000).expect("runs");
        assert_eq!(a.value, 500_500);
        assert_eq!(a.memory_bytes, PAGE_BYTES);
        let b = rt.execute(2, sum, 2_000, 1_000_000).expect("runs");
        assert_eq!(b.value, 2_001_000);
        // Deterministic: the same task costs the same, and each iteration a fixed amount.
        assert_eq!(rt.execute(3, sum, 1_000, 1_000_000).expect("runs"), a);
        assert_eq!(a.fuel_used, SUM_FUEL_1000);
        let per_iteration = (b.fuel_used - a.fuel_used) / 1_000;
        assert_eq!(b.fuel_used - a.fuel_used, per_iteration * 1_000);
        assert_eq!(a.fuel_used, SUM_FUEL_BASE + per_iteration * 1_000);
    }

    /// Measured with wasmi 0.46: 7 units of set-up plus 5 per loop iteration.
    const SUM_FUEL_1000: u64 = 5_007;
    const SUM_FUEL_BASE: u64 = 7;

    #[test]
    fn trap_is_an_error_with_its_code() {
        let rt = runtime();
        let err = rt
            .execute(1, rt.program(Program::Trap), 0, 10_000)
            .expect_err("traps");
        assert!(
            matches!(&err, ExecError::Trap { code, .. } if code == "unreachable"),
            "{err:?}"
        );
        assert_eq!(err.exit_label(), "trap");
    }

    #[test]
    fn spin_runs_out_of_fuel_at_its_budget() {
        let rt = runtime();
        let err = rt
            .execute(1, rt.program(Program::Spin), 0, 5_000)
            .expect_err("runs out of fuel");
        assert!(matches!(err, ExecError::OutOfFuel { .. }), "{err:?}");
        assert!(
            err.fuel_used() <= 5_000 && err.fuel_used() > 4_900,
            "{err:?}"
        );
        assert_eq!(err.exit_label(), "out_of_fuel");
    }

    #[test]
    fn grow_reports_memory_after_the_run() {
        let rt = runtime();
        let ok = rt
            .execute(1, rt.program(Program::Grow), 3, 10_000)
            .expect("grows");
        assert_eq!(ok.value, 4);
        assert_eq!(ok.memory_bytes, 4 * PAGE_BYTES);
        // Past the memory limit the growth fails and memory stays as it was.
        let capped = rt
            .execute(2, rt.program(Program::Grow), 10_000, 10_000)
            .expect("runs");
        assert_eq!(capped.value, 1);
        assert_eq!(capped.memory_bytes, PAGE_BYTES);
    }

    #[test]
    fn invalid_modules_are_rejected() {
        let rt = runtime();
        let err = rt.load(b"\0asm\x01\0\0\0\xff").expect_err("invalid");
        assert!(matches!(err, ExecError::Invalid(_)), "{err:?}");
        assert!(rt.load(b"not wasm").is_err());
    }

    #[test]
    fn module_hash_is_the_sha256_of_the_binary() {
        let rt = runtime();
        let loaded = rt.load(b"\0asm\x01\0\0\0").expect("empty module is valid");
        assert_eq!(loaded.hash.len(), 64);
        assert_ne!(loaded.hash, rt.program(Program::Sum).hash);
    }
}
