namespace LoraPS.Module.Infrastructure;

/// <summary>
/// The ErrorId of every error LoraPS reports. They are public API: scripts match on
/// <c>$_.FullyQualifiedErrorId -like 'PathNotFound,*'</c>, so an id, once shipped, never changes meaning.
/// Each error also carries a deliberate <see cref="System.Management.Automation.ErrorCategory"/>.
/// </summary>
public static class ErrorIds
{
    // Paths (ObjectNotFound / InvalidArgument).
    /// <summary>A -Path or -LiteralPath names nothing that exists.</summary>
    public const string PathNotFound = "PathNotFound";
    /// <summary>A path resolved to something other than the file system (e.g. a registry or variable drive).</summary>
    public const string PathNotFileSystem = "PathNotFileSystem";
    /// <summary>A wildcard path matched several items where exactly one is needed.</summary>
    public const string PathAmbiguous = "PathAmbiguous";

    // Engine exceptions mapped by ErrorRecords.FromException.
    /// <summary>A file or folder the engine needed does not exist (ObjectNotFound).</summary>
    public const string FileNotFound = "FileNotFound";
    /// <summary>A file exists but its content is malformed or not what was expected (InvalidData).</summary>
    public const string InvalidData = "InvalidData";
    /// <summary>An argument value is out of range or inconsistent with another (InvalidArgument).</summary>
    public const string InvalidArgument = "InvalidArgument";
    /// <summary>The operation is not valid in the current state, e.g. on a released model (InvalidOperation).</summary>
    public const string InvalidOperation = "InvalidOperation";
    /// <summary>The request is well-formed but LoraPS does not support it (NotImplemented).</summary>
    public const string NotSupported = "NotSupported";
    /// <summary>The operation was cancelled before it finished (OperationStopped).</summary>
    public const string OperationCanceled = "OperationCanceled";
    /// <summary>The process may not read or write a file (PermissionDenied).</summary>
    public const string PermissionDenied = "PermissionDenied";
    /// <summary>Reading or writing a file failed (ReadError / WriteError).</summary>
    public const string IOError = "IOError";
    /// <summary>The machine ran out of memory (ResourceUnavailable).</summary>
    public const string OutOfMemory = "OutOfMemory";
    /// <summary>An exception LoraPS did not anticipate; the message and inner exception tell what happened (NotSpecified).</summary>
    public const string Unexpected = "Unexpected";

    // Adapters.
    /// <summary>A model has no adapter of the given name (ObjectNotFound); the message lists the names it has.</summary>
    public const string AdapterNotFound = "AdapterNotFound";
    /// <summary>A folder already holds an adapter and -Force was not given (ResourceExists).</summary>
    public const string AdapterExists = "AdapterExists";
    /// <summary>An output folder is not empty and -Force was not given (ResourceExists).</summary>
    public const string FolderNotEmpty = "FolderNotEmpty";

    // Quantization.
    /// <summary>-Quantize names no known format (InvalidArgument); the message lists nf4, nf4-dq, fp4, fp4-dq, int8.</summary>
    public const string UnknownQuantizationType = "UnknownQuantizationType";
    /// <summary>A model or checkpoint that is already quantized was asked to be quantized again (InvalidOperation).</summary>
    public const string AlreadyQuantized = "AlreadyQuantized";

    // Runtime.
    /// <summary>libtorch's native libraries could not be loaded (ResourceUnavailable).</summary>
    public const string TorchUnavailable = "TorchUnavailable";

    // Evaluation.
    /// <summary>-Task names no task (ObjectNotFound); the message lists close matches.</summary>
    public const string UnknownTask = "UnknownTask";
    /// <summary>A task's data file is missing under the data root (ObjectNotFound); give -DataRoot.</summary>
    public const string TaskDataNotFound = "TaskDataNotFound";
    /// <summary>A task needs another model head, e.g. MMLU on a classification model (InvalidArgument).</summary>
    public const string ModelHeadMismatch = "ModelHeadMismatch";
    /// <summary>-OutFile exists and -Force was not given (ResourceExists).</summary>
    public const string ResultsFileExists = "ResultsFileExists";
    // Training.
    /// <summary>The training loss or gradient norm became NaN/∞; the step was not applied and the last checkpoint is good (InvalidResult).</summary>
    public const string TrainingDiverged = "TrainingDiverged";
}
