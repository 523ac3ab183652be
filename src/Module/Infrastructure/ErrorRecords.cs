using System.Management.Automation;

namespace LoraPS.Module.Infrastructure;

/// <summary>
/// Builds <see cref="ErrorRecord"/>s. The engine throws plain .NET exceptions whose messages already name the file
/// and say what to do; here they only get an ErrorId and a category, so PowerShell users can filter and catch them.
/// </summary>
public static class ErrorRecords
{
    /// <summary>An error record for a condition the cmdlet detected itself.</summary>
    /// <param name="errorId">One of <see cref="ErrorIds"/>.</param>
    /// <param name="category">What kind of failure this is.</param>
    /// <param name="message">What went wrong and what to do about it.</param>
    /// <param name="target">The object the error is about (a path, a model, an item); shown as TargetObject.</param>
    /// <param name="inner">The exception that caused it, if any.</param>
    public static ErrorRecord Create(string errorId, ErrorCategory category, string message, object? target = null, Exception? inner = null)
    {
        Exception exception = category switch
        {
            ErrorCategory.ObjectNotFound => new ItemNotFoundException(message, inner),
            ErrorCategory.InvalidArgument => new ArgumentException(message, inner),
            ErrorCategory.InvalidData => new InvalidDataException(message, inner),
            ErrorCategory.OperationStopped => new OperationCanceledException(message, inner),
            _ => new InvalidOperationException(message, inner),
        };
        return new ErrorRecord(exception, errorId, category, target);
    }

    /// <summary>
    /// Maps an exception from the engine to an error record: the type decides ErrorId and category, the message
    /// is kept. Order matters: FileNotFoundException is an IOException, ArgumentNullException an ArgumentException.
    /// </summary>
    public static ErrorRecord FromException(Exception exception, object? target = null)
    {
        exception = Unwrap(exception);
        var (id, category) = Classify(exception);
        return new ErrorRecord(exception, id, category, target);
    }

    /// <summary>The ErrorId and category <see cref="FromException"/> gives an exception type.</summary>
    public static (string ErrorId, ErrorCategory Category) Classify(Exception exception) => exception switch
    {
        LoraPS.Training.TrainingDivergedException => (ErrorIds.TrainingDiverged, ErrorCategory.InvalidResult),
        LoraPS.Quantization.AlreadyQuantizedException => (ErrorIds.AlreadyQuantized, ErrorCategory.InvalidOperation),
        FileNotFoundException or DirectoryNotFoundException => (ErrorIds.FileNotFound, ErrorCategory.ObjectNotFound),
        ItemNotFoundException => (ErrorIds.PathNotFound, ErrorCategory.ObjectNotFound),
        InvalidDataException or FormatException => (ErrorIds.InvalidData, ErrorCategory.InvalidData),
        ArgumentException => (ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument),
        OperationCanceledException => (ErrorIds.OperationCanceled, ErrorCategory.OperationStopped),
        UnauthorizedAccessException => (ErrorIds.PermissionDenied, ErrorCategory.PermissionDenied),
        EndOfStreamException => (ErrorIds.InvalidData, ErrorCategory.InvalidData),
        IOException => (ErrorIds.IOError, ErrorCategory.ReadError),
        NotSupportedException or NotImplementedException => (ErrorIds.NotSupported, ErrorCategory.NotImplemented),
        OutOfMemoryException or InsufficientMemoryException => (ErrorIds.OutOfMemory, ErrorCategory.ResourceUnavailable),
        InvalidOperationException or ObjectDisposedException => (ErrorIds.InvalidOperation, ErrorCategory.InvalidOperation),
        _ => (ErrorIds.Unexpected, ErrorCategory.NotSpecified),
    };

    /// <summary>Unwraps exceptions that only carry another: reflection calls, type initialisers, single-exception aggregates.</summary>
    public static Exception Unwrap(Exception exception)
    {
        while (true)
        {
            switch (exception)
            {
                case System.Reflection.TargetInvocationException { InnerException: { } inner }: exception = inner; continue;
                case AggregateException aggregate when aggregate.InnerExceptions.Count == 1: exception = aggregate.InnerExceptions[0]; continue;
                default: return exception;
            }
        }
    }
}
