//! The stable code of every diagnostic kind the front end reports. Tests,
//! documentation and editors match on these; never rename one.

/// The text does not follow the grammar (the message says what was expected).
pub const SYNTAX: &str = "msnr::syntax";
/// A string escape such as `\q` that the language does not define.
pub const BAD_ESCAPE: &str = "msnr::bad_escape";
/// An integer literal, or one scaled by `k`/`M`, does not fit in 64 bits.
pub const INT_OVERFLOW: &str = "msnr::int_overflow";
/// A number literal that is malformed (a suffix on a float, an infinite float).
pub const BAD_NUMBER: &str = "msnr::bad_number";
/// Brackets nested deeper than the parser allows.
pub const TOO_DEEP: &str = "msnr::too_deep";
/// `stage x = foo {}` where `foo` is not a stage kind.
pub const UNKNOWN_KIND: &str = "msnr::unknown_kind";
/// A field that the stage kind or constructor does not declare.
pub const UNKNOWN_PARAMETER: &str = "msnr::unknown_parameter";
/// A constructor (or nullary variant) not in the expected type family.
pub const UNKNOWN_VARIANT: &str = "msnr::unknown_variant";
/// A constructor name that exists in no type family at all.
pub const UNKNOWN_CONSTRUCTOR: &str = "msnr::unknown_constructor";
/// A type name in a declaration that is not a type (stdlib).
pub const UNKNOWN_TYPE: &str = "msnr::unknown_type";
/// A value of the wrong type for its parameter.
pub const TYPE_MISMATCH: &str = "msnr::type_mismatch";
/// A required parameter (one without default) is not given.
pub const MISSING_PARAMETER: &str = "msnr::missing_parameter";
/// Two declarations (or fields, or sweep variables) with one name.
pub const DUPLICATE: &str = "msnr::duplicate";
/// A bare name that is no sweep variable, param, stage or variant in scope.
pub const UNDEFINED: &str = "msnr::undefined";
/// A `use` whose file does not exist (or cannot be read).
pub const IMPORT_NOT_FOUND: &str = "msnr::import_not_found";
/// The pipeline file given on the command line is missing, a folder, or not UTF-8 text.
pub const UNREADABLE_PIPELINE: &str = "msnr::unreadable_pipeline";
/// Files that import each other.
pub const IMPORT_CYCLE: &str = "msnr::import_cycle";
/// A `--set name=value` naming no param or with an unparsable value.
pub const BAD_OVERRIDE: &str = "msnr::bad_override";
/// A reference to a swept stage from outside its sweep, or to an instance that does not exist.
pub const SWEPT_REFERENCE: &str = "msnr::swept_reference";
/// A sweep whose domain is empty, not a list, or yields two equal instance names.
pub const BAD_SWEEP: &str = "msnr::bad_sweep";
/// Two instances of one swept stage whose parameters resolve to equal values.
pub const DUPLICATE_INSTANCE: &str = "msnr::duplicate_instance";
/// A param whose value refers back to itself.
pub const PARAM_CYCLE: &str = "msnr::param_cycle";
/// A `type` or `kind` declaration outside the standard library.
pub const DECLARATION_OUTSIDE_STDLIB: &str = "msnr::declaration_outside_stdlib";
/// A parameter value the stage kind cannot use (out of range, a combination it refuses).
pub const INVALID_PARAMETER: &str = "msnr::invalid_parameter";
/// A dataset whose shape the stage's net cannot take.
pub const DATA_DOES_NOT_FIT_NET: &str = "msnr::data_does_not_fit_net";
/// A reference to a stage that does not exist (graph building).
pub const UNDEFINED_STAGE: &str = "msnr::undefined_stage";
/// Stages that depend on each other in a circle.
pub const DEPENDENCY_CYCLE: &str = "msnr::dependency_cycle";
