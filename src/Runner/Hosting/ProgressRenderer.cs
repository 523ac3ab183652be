using System.Diagnostics;
using System.Management.Automation;
using System.Text;

namespace LoraPS.Runner.Hosting;

/// <summary>
/// Shows Write-Progress on stderr. On a terminal: one line, redrawn in place, for the most recently updated
/// activity, cleared when it completes. Redirected: occasional plain lines (an activity's start, every 10%,
/// a changed status at most every <see cref="SparseInterval"/>, and its completion), so logs stay readable.
/// </summary>
public sealed class ProgressRenderer(Terminal terminal, Func<long>? clock = null)
{
    /// <summary>Minimum time between two status lines of one activity when stderr is not a terminal.</summary>
    public static readonly TimeSpan SparseInterval = TimeSpan.FromSeconds(5);

    readonly Func<long> _clock = clock ?? Stopwatch.GetTimestamp;
    // Keyed by activity id alone: each Write-Progress call is a new command with its own source id, so
    // "-Completed" arrives from a different source than the updates it ends.
    readonly Dictionary<int, Activity> _activities = new();
    string? _shownLine;

    sealed class Activity
    {
        public int Bucket = -1;
        public long LastPrinted = long.MinValue;
        public string? LastStatus;
        public bool Printed;
    }

    /// <summary>True while a live progress line occupies the terminal's current line.</summary>
    public bool LineShown => _shownLine is not null;

    public void Render(long sourceId, ProgressRecord record)
    {
        var key = record.ActivityId;
        if (record.RecordType == ProgressRecordType.Completed)
        {
            if (_activities.Remove(key, out var done) && !terminal.ErrorIsTerminal && done.Printed)
                terminal.Error.WriteLine($"{record.Activity}: done");
            // An enclosing activity still running is drawn again by its next update.
            if (terminal.ErrorIsTerminal) Clear();
            return;
        }

        if (!_activities.TryGetValue(key, out var activity)) _activities[key] = activity = new Activity();
        if (terminal.ErrorIsTerminal) Show(Format(record, terminal.Width - 1));
        else PrintSparse(record, activity);
    }

    /// <summary>Forgets every activity and erases the live line: pwsh drops progress when a command ends.</summary>
    public void Reset()
    {
        Clear();
        _suspended = null;
        _activities.Clear();
    }

    /// <summary>Erases the live line before other text is written; <see cref="Restore"/> redraws it after.</summary>
    public void Clear()
    {
        if (_shownLine is null) return;
        terminal.Error.Write("\r\x1b[2K");
        _shownLine = null;
    }

    string? _suspended;

    /// <summary>Erases the live line and remembers it, so output can be written on a clean line.</summary>
    public void Suspend()
    {
        if (_shownLine is null) return;
        _suspended = _shownLine;
        Clear();
    }

    /// <summary>Redraws the line erased by <see cref="Suspend"/>.</summary>
    public void Restore()
    {
        if (_suspended is null) return;
        Show(_suspended);
        _suspended = null;
    }

    void Show(string line)
    {
        terminal.Error.Write("\r\x1b[2K" + line);
        _shownLine = line;
    }

    void PrintSparse(ProgressRecord record, Activity activity)
    {
        long now = _clock();
        int bucket = record.PercentComplete >= 0 ? record.PercentComplete / 10 : -1;
        bool first = !activity.Printed;
        bool newBucket = bucket > activity.Bucket;
        bool statusDue = record.StatusDescription != activity.LastStatus &&
                         now - activity.LastPrinted >= (long)(SparseInterval.TotalSeconds * Stopwatch.Frequency);
        if (!(first || newBucket || statusDue)) return;
        activity.Printed = true;
        activity.Bucket = Math.Max(activity.Bucket, bucket);
        activity.LastPrinted = now;
        activity.LastStatus = record.StatusDescription;
        terminal.Error.WriteLine(Format(record, width: int.MaxValue, bar: false));
    }

    /// <summary>"Activity: status [#####     ] 50% operation (12s left)", cut to the width.</summary>
    public static string Format(ProgressRecord record, int width, bool bar = true)
    {
        var line = new StringBuilder(record.Activity);
        if (!string.IsNullOrEmpty(record.StatusDescription)) line.Append(": ").Append(record.StatusDescription);
        if (record.PercentComplete >= 0)
        {
            int pct = Math.Clamp(record.PercentComplete, 0, 100);
            if (bar)
            {
                const int cells = 20;
                int filled = pct * cells / 100;
                line.Append(" [").Append('#', filled).Append(' ', cells - filled).Append(']');
            }
            line.Append(' ').Append(pct).Append('%');
        }
        if (!string.IsNullOrEmpty(record.CurrentOperation)) line.Append(' ').Append(record.CurrentOperation);
        if (record.SecondsRemaining >= 0) line.Append(" (").Append(TimeSpan.FromSeconds(record.SecondsRemaining).ToString(@"h\:mm\:ss")).Append(" left)");
        string text = line.ToString().Replace('\n', ' ').Replace('\r', ' ');
        return text.Length > width && width > 1 ? text[..(width - 1)].TrimEnd() + "…" : text;
    }
}
