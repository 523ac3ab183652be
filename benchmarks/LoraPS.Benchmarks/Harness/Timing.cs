using System.Diagnostics;

namespace LoraPS.Benchmarks.Harness;

/// <summary>Wall-clock times of repeated runs of one step, in milliseconds.</summary>
public sealed record TimingResult(IReadOnlyList<double> Milliseconds)
{
    /// <summary>The median: robust to the odd slow iteration (GC, another process on a shared machine).</summary>
    public double Median => Percentile(50);
    public double Min => Milliseconds.Min();
    public double Max => Milliseconds.Max();
    public double Mean => Milliseconds.Average();
    public double P90 => Percentile(90);

    /// <summary>Linear interpolation between the closest ranks.</summary>
    public double Percentile(double p)
    {
        var sorted = Milliseconds.Order().ToArray();
        if (sorted.Length == 1) return sorted[0];
        double rank = p / 100 * (sorted.Length - 1);
        int low = (int)Math.Floor(rank);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (rank - low) * (sorted[high] - sorted[low]);
    }
}

/// <summary>Times a step: warm-up runs, then timed runs, with a full GC before timing so earlier garbage does not land inside.</summary>
public static class Timing
{
    /// <param name="step">One iteration. It must finish its work before returning (TorchSharp on CPU is synchronous).</param>
    /// <param name="warmup">Untimed iterations first.</param>
    /// <param name="iterations">Timed iterations.</param>
    public static TimingResult Measure(Action step, int warmup, int iterations)
    {
        ArgumentNullException.ThrowIfNull(step);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(iterations);
        for (int i = 0; i < warmup; i++) step();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var times = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            long start = Stopwatch.GetTimestamp();
            step();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return new TimingResult(times);
    }

    /// <summary>
    /// Times several steps round-robin (A, B, C, A, B, C, …) so that load from other processes on a shared machine,
    /// thermal drift and allocator state hit all of them alike; ratios between them are then much steadier than from
    /// back-to-back blocks.
    /// </summary>
    public static IReadOnlyDictionary<string, TimingResult> MeasureInterleaved(IReadOnlyList<(string Name, Action Step)> steps, int warmup, int iterations)
    {
        ArgumentNullException.ThrowIfNull(steps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(iterations);
        for (int i = 0; i < warmup; i++)
            foreach (var (_, step) in steps) step();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var times = steps.ToDictionary(s => s.Name, _ => new double[iterations]);
        for (int i = 0; i < iterations; i++)
        {
            foreach (var (name, step) in steps)
            {
                long start = Stopwatch.GetTimestamp();
                step();
                times[name][i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        }
        return times.ToDictionary(kv => kv.Key, kv => new TimingResult(kv.Value));
    }
}
