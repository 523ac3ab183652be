using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Management.Automation;
using Microsoft.PowerShell.Commands;

namespace LoraPS.Module.Infrastructure;

/// <summary>
/// Base class of every LoraPS cmdlet. It gives the cmdlet a <see cref="CancellationToken"/> that Ctrl+C (or
/// <c>PowerShell.Stop()</c>) cancels, throttled progress, path resolution through the session, and error records
/// with stable <see cref="ErrorIds"/>.
/// </summary>
/// <remarks>
/// A LoraPS cmdlet binds and validates, resolves paths, calls one engine entry point synchronously on the pipeline
/// thread (TorchSharp's dispose scopes are thread-static and PowerShell accepts output only there) and turns the
/// result into small typed records. <see cref="StopProcessing"/> runs on another thread and only cancels the token;
/// the engine checks it between steps and throws <see cref="OperationCanceledException"/>, which
/// <see cref="RunEngine{T}"/> turns into PowerShell's own "pipeline stopped".
/// </remarks>
public abstract class LoraCmdlet : PSCmdlet, IDisposable
{
    readonly CancellationTokenSource _stopping = new();

    /// <summary>Cancelled when the user stops the pipeline. Pass it to every engine call that can take long.</summary>
    protected CancellationToken CancellationToken => _stopping.Token;

    /// <summary>Cancels <see cref="CancellationToken"/>; the engine notices at its next check.</summary>
    protected override void StopProcessing() => _stopping.Cancel();

    /// <summary>PowerShell disposes cmdlets that implement IDisposable when the pipeline ends.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Override to release what the cmdlet owns; call the base.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing) _stopping.Dispose();
    }

    // ---- Running the engine -------------------------------------------------------------------------------

    /// <summary>
    /// Calls the engine and maps its exceptions: cancellation caused by <see cref="StopProcessing"/> becomes
    /// <see cref="PipelineStoppedException"/>; any other exception a terminating error with the id and category
    /// from <see cref="ErrorRecords.Classify"/>.
    /// </summary>
    /// <param name="work">The engine call; it receives <see cref="CancellationToken"/>.</param>
    /// <param name="target">What the call is about, shown as the error's TargetObject.</param>
    protected T RunEngine<T>(Func<CancellationToken, T> work, object? target = null)
    {
        try
        {
            return work(CancellationToken);
        }
        catch (Exception e) when (IsEngineFailure(e))
        {
            if (ErrorRecords.Unwrap(e) is OperationCanceledException && _stopping.IsCancellationRequested)
                throw new PipelineStoppedException();
            ThrowTerminatingError(ErrorRecords.FromException(e, target));
            throw; // unreachable: ThrowTerminatingError always throws
        }
    }

    /// <summary>As <see cref="RunEngine{T}(Func{CancellationToken, T}, object?)"/> for engine calls without a result.</summary>
    protected void RunEngine(Action<CancellationToken> work, object? target = null) =>
        RunEngine<object?>(token => { work(token); return null; }, target);

    /// <summary>PowerShell's own control-flow exceptions pass through untouched.</summary>
    static bool IsEngineFailure(Exception e) =>
        e is not (PipelineStoppedException or ActionPreferenceStopException or FlowControlException or HaltCommandException);

    // ---- Errors -------------------------------------------------------------------------------------------

    /// <summary>Stops the cmdlet with an error it detected itself (bad setup, a missing file, a wrong argument).</summary>
    /// <param name="errorId">One of <see cref="ErrorIds"/>.</param>
    /// <param name="category">What kind of failure this is.</param>
    /// <param name="message">What went wrong and what to do about it.</param>
    /// <param name="target">The object the error is about.</param>
    /// <param name="inner">The exception that caused it, if any.</param>
    [DoesNotReturn]
    protected void ThrowTerminating(string errorId, ErrorCategory category, string message, object? target = null, Exception? inner = null)
    {
        ThrowTerminatingError(ErrorRecords.Create(errorId, category, message, target, inner));
        throw new UnreachableException();
    }

    /// <summary>Stops the cmdlet with an engine exception, mapped by <see cref="ErrorRecords.FromException"/>.</summary>
    [DoesNotReturn]
    protected void ThrowTerminating(Exception exception, object? target = null)
    {
        ThrowTerminatingError(ErrorRecords.FromException(exception, target));
        throw new UnreachableException();
    }

    /// <summary>Reports one failed item and lets the cmdlet go on with the next (a non-terminating error).</summary>
    protected void WriteError(string errorId, ErrorCategory category, string message, object? target = null, Exception? inner = null) =>
        WriteError(ErrorRecords.Create(errorId, category, message, target, inner));

    /// <summary>Reports one failed item from an engine exception and lets the cmdlet go on.</summary>
    protected void WriteError(Exception exception, object? target = null) =>
        WriteError(ErrorRecords.FromException(exception, target));

    /// <summary>
    /// Parses a <c>-Quantize</c> value (nf4, nf4-dq, fp4, fp4-dq, int8); anything else stops the cmdlet with
    /// UnknownQuantizationType and the list of valid names.
    /// </summary>
    protected LoraPS.Quantization.QuantizationOptions ParseQuantization(string name)
    {
        try
        {
            return LoraPS.Quantization.QuantizationOptions.Parse(name);
        }
        catch (ArgumentException e)
        {
            ThrowTerminating(ErrorIds.UnknownQuantizationType, ErrorCategory.InvalidArgument, e.Message, name, e);
            return null!;
        }
    }

    // ---- Progress -----------------------------------------------------------------------------------------

    /// <summary>
    /// A progress sink to hand to the engine. Use it in a <c>using</c> statement so the bar is closed even when
    /// the engine throws.
    /// </summary>
    /// <param name="activity">The bar's title, e.g. "Fine-tuning stories260K".</param>
    /// <param name="describe">Turns one engine progress value into what the bar shows.</param>
    /// <param name="activityId">Distinguishes concurrent bars of one cmdlet.</param>
    /// <param name="parentActivityId">The enclosing bar's id for nested progress, or -1.</param>
    /// <param name="minInterval">Minimum time between two rendered updates (default 250 ms).</param>
    protected ProgressReporter<T> CreateProgress<T>(string activity, Func<T, ProgressUpdate> describe, int activityId = 0,
                                                    int parentActivityId = -1, TimeSpan? minInterval = null) =>
        new(this, activityId, activity, describe, minInterval, parentActivityId);

    // ---- Paths --------------------------------------------------------------------------------------------

    /// <summary>
    /// The file-system path for a -LiteralPath or an output path: relative to the current PowerShell location
    /// (not the process directory), drives and <c>~</c> expanded, no wildcards, need not exist.
    /// </summary>
    protected string GetUnresolvedFileSystemPath(string path)
    {
        // Initialised only for the compiler: every catch below ends in ThrowTerminating, which does not return.
        string resolved = "";
        ProviderInfo provider = null!;
        try
        {
            resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out provider, out _);
        }
        catch (Exception e) when (e is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or NotSupportedException)
        {
            ThrowTerminating(ErrorIds.PathNotFileSystem, ErrorCategory.InvalidArgument,
                $"'{path}' is not a file-system path: {e.Message} Give a path to a file or folder.", path, e);
        }
        RequireFileSystem(provider, path);
        return resolved;
    }

    /// <summary>
    /// Resolves an existing -Path (wildcards expanded) or -LiteralPath (taken as written) to file-system paths.
    /// Stops with <see cref="ErrorIds.PathNotFound"/> when nothing matches.
    /// </summary>
    /// <param name="path">The path as the user typed it.</param>
    /// <param name="literal">True for -LiteralPath: no wildcard expansion.</param>
    protected IReadOnlyList<string> ResolveExistingFileSystemPaths(string path, bool literal)
    {
        if (literal)
        {
            string full = GetUnresolvedFileSystemPath(path);
            if (!File.Exists(full) && !Directory.Exists(full))
                ThrowTerminating(ErrorIds.PathNotFound, ErrorCategory.ObjectNotFound,
                    $"Cannot find '{full}' because it does not exist. Check the path, or create it first.", path);
            return new[] { full };
        }

        Collection<string> matches = new();
        ProviderInfo provider = null!;
        try
        {
            matches = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out provider);
        }
        catch (ItemNotFoundException e)
        {
            ThrowTerminating(ErrorIds.PathNotFound, ErrorCategory.ObjectNotFound,
                $"Cannot find '{path}' because it does not exist. Check the path; use -LiteralPath if it contains [ or ].", path, e);
        }
        catch (Exception e) when (e is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or NotSupportedException)
        {
            ThrowTerminating(ErrorIds.PathNotFileSystem, ErrorCategory.InvalidArgument,
                $"'{path}' is not a file-system path: {e.Message} Give a path to a file or folder.", path, e);
        }
        RequireFileSystem(provider, path);
        if (matches.Count == 0)
            ThrowTerminating(ErrorIds.PathNotFound, ErrorCategory.ObjectNotFound,
                $"No file or folder matches '{path}'. Check the wildcard pattern.", path);
        return matches;
    }

    /// <summary>Resolves a -Path or -LiteralPath that must name exactly one existing file or folder.</summary>
    protected string ResolveSingleExistingFileSystemPath(string path, bool literal)
    {
        var matches = ResolveExistingFileSystemPaths(path, literal);
        if (matches.Count > 1)
            ThrowTerminating(ErrorIds.PathAmbiguous, ErrorCategory.InvalidArgument,
                $"'{path}' matches {matches.Count} items ({string.Join(", ", matches.Take(3))}{(matches.Count > 3 ? ", …" : "")}); " +
                "this parameter takes exactly one. Make the pattern more specific or use -LiteralPath.", path);
        return matches[0];
    }

    void RequireFileSystem(ProviderInfo provider, string path)
    {
        if (provider.ImplementingType != typeof(FileSystemProvider))
            ThrowTerminating(ErrorIds.PathNotFileSystem, ErrorCategory.InvalidArgument,
                $"'{path}' is on the {provider.Name} provider, not the file system. Give a path to a file or folder.", path);
    }
}
