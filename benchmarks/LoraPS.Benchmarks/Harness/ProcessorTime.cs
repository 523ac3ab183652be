using System.Diagnostics;

namespace LoraPS.Benchmarks.Harness;

/// <summary>
/// CPU time this process has used (all threads), next to wall time. On a machine shared with other jobs the wall time
/// of a step inflates with the load while its CPU time barely moves, so CPU-time rates are the load-robust figure; with
/// one torch thread, CPU time per step is what the wall time would be on an idle machine.
/// </summary>
public static class ProcessorTime
{
    static readonly Process Self = Process.GetCurrentProcess();

    /// <summary>Milliseconds of CPU (user + system) used so far.</summary>
    public static double Milliseconds()
    {
        Self.Refresh();
        return Self.TotalProcessorTime.TotalMilliseconds;
    }
}
