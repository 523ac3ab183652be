using System.Diagnostics;
using System.Management.Automation;

namespace LoraPS.Module.Infrastructure;

/// <summary>How one engine progress value is shown in PowerShell's progress bar.</summary>
/// <param name="Status">The status line, e.g. "step 40/200, loss 2.31".</param>
/// <param name="PercentComplete">0–100, or -1 when unknown.</param>
/// <param name="CurrentOperation">An optional second line.</param>
/// <param name="SecondsRemaining">Estimated seconds left, or -1 when unknown.</param>
public readonly record struct ProgressUpdate(string Status, int PercentComplete = -1, string? CurrentOperation = null, int SecondsRemaining = -1);

/// <summary>
/// Turns the engine's synchronous progress callbacks into <see cref="Cmdlet.WriteProgress"/> calls, at most a few per
/// second, and ends the bar with a Completed record when disposed.
/// </summary>
/// <remarks>
/// PowerShell accepts progress only from the pipeline thread, so the engine must run synchronously inside the
/// cmdlet and call <see cref="Report"/> on that thread; reports from any other thread are refused with an exception
/// instead of PowerShell's less helpful one. Throttling keeps hosts responsive: a training loop may report every
/// step, but rendering a bar costs far more than a step of a tiny model.
/// </remarks>
public sealed class ProgressReporter<T> : IProgress<T>, IDisposable
{
    /// <summary>The default minimum time between two rendered updates.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(250);

    readonly Cmdlet _cmdlet;
    readonly int _activityId, _parentActivityId;
    readonly string _activity;
    readonly Func<T, ProgressUpdate> _describe;
    readonly long _intervalTicks;
    readonly int _threadId = Environment.CurrentManagedThreadId;
    long _lastWrite = long.MinValue;
    bool _hasPending, _completed;
    T _pending = default!;
    ProgressUpdate _shown = new("Starting");

    internal ProgressReporter(Cmdlet cmdlet, int activityId, string activity, Func<T, ProgressUpdate> describe,
                              TimeSpan? minInterval, int parentActivityId)
    {
        _cmdlet = cmdlet;
        _describe = describe;
        _activityId = activityId;
        _activity = activity;
        _parentActivityId = parentActivityId;
        _intervalTicks = (long)((minInterval ?? DefaultInterval).TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>How many progress records this reporter has written (updates plus the Completed record).</summary>
    public int RecordsWritten { get; private set; }

    /// <summary>Records the latest value; renders it now if the last rendering is older than the interval.</summary>
    public void Report(T value)
    {
        if (Environment.CurrentManagedThreadId != _threadId)
            throw new InvalidOperationException(
                "Progress was reported from a background thread. Run the engine synchronously on the cmdlet's " +
                "pipeline thread (PowerShell accepts progress only there) and report from that thread.");
        if (_completed) return;
        _pending = value;
        _hasPending = true;
        long now = Stopwatch.GetTimestamp();
        if (_lastWrite != long.MinValue && now - _lastWrite < _intervalTicks) return;
        // Once the pipeline is stopping (Ctrl+C) PowerShell refuses progress. The engine notices the stop through its
        // cancellation token and must be left to finish cleanly (a training run saves its checkpoint), so stop showing
        // progress instead of throwing out of the engine.
        try { Flush(now); }
        catch (PipelineStoppedException) { _completed = true; }
    }

    /// <summary>Renders the last reported value if it was throttled, then closes the bar. Idempotent.</summary>
    public void Complete()
    {
        if (_completed) return;
        _completed = true;
        if (_hasPending) Flush(Stopwatch.GetTimestamp());
        Write(ProgressRecordType.Completed);
    }

    /// <summary>Same as <see cref="Complete"/>, so a <c>using</c> block always closes the bar.</summary>
    public void Dispose()
    {
        // The pipeline may already be stopping (Ctrl+C); writing then throws PipelineStoppedException, which must
        // not replace the exception that is unwinding.
        try { Complete(); }
        catch (PipelineStoppedException) { }
    }

    void Flush(long now)
    {
        _shown = _describe(_pending);
        _hasPending = false;
        _lastWrite = now;
        Write(ProgressRecordType.Processing);
    }

    // A new record each time: hosts and Streams.Progress keep the records they are given.
    void Write(ProgressRecordType type)
    {
        _cmdlet.WriteProgress(new ProgressRecord(_activityId, _activity, string.IsNullOrEmpty(_shown.Status) ? "Working" : _shown.Status)
        {
            ParentActivityId = _parentActivityId,
            PercentComplete = Math.Clamp(_shown.PercentComplete, -1, 100),
            CurrentOperation = _shown.CurrentOperation,
            SecondsRemaining = _shown.SecondsRemaining,
            RecordType = type,
        });
        RecordsWritten++;
    }
}
