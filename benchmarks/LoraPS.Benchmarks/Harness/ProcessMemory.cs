using System.Globalization;

namespace LoraPS.Benchmarks.Harness;

/// <summary>
/// Resident memory of this process from Linux's <c>/proc/self/status</c>: <c>VmHWM</c> (the peak, "high water mark")
/// and <c>VmRSS</c>. Native libtorch allocations count too, which the .NET GC's numbers miss. Null where /proc is absent.
/// </summary>
public static class ProcessMemory
{
    public static long? PeakRssBytes() => StatusValue("VmHWM:");

    public static long? CurrentRssBytes() => StatusValue("VmRSS:");

    /// <summary>
    /// Resets the peak to the current RSS (writing 5 to <c>/proc/self/clear_refs</c>, Linux ≥ 4.0), so a following
    /// <see cref="PeakRssBytes"/> covers one case only. Returns false where that is not allowed; the peak is then the
    /// process's peak so far.
    /// </summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Any kB field of <c>/proc/self/status</c> in bytes, e.g. <c>RssAnon:</c> (heap) or <c>RssFile:</c> (mapped files).</summary>
    public static long? StatusBytes(string key) => StatusValue(key);

    static long? StatusValue(string key)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // The kernel reports kB (= KiB).
            return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
        }
        return null;
    }
}
