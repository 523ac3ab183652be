using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;

namespace LoraPS.Benchmarks.Harness;

/// <summary>
/// What a benchmark writes to <c>benchmarks/results/&lt;name&gt;.json</c>: when and where it ran, its settings, and
/// its result rows (any JSON-serialisable records).
/// </summary>
public sealed record BenchmarkReport(string Benchmark, object Settings, IReadOnlyList<object> Results)
{
    public DateTimeOffset Timestamp { get; init; } = DateTimeOffset.UtcNow;
    public MachineInfo Machine { get; init; } = MachineInfo.Current();

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Writes the report (creating its folder) and returns the path written.</summary>
    public string Write(string? path)
    {
        var target = Path.GetFullPath(path ?? Path.Combine(RepositoryRoot(), "benchmarks", "results", Benchmark + ".json"));
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var temp = target + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json) + "\n");
        File.Move(temp, target, overwrite: true);
        return target;
    }

    /// <summary>The folder holding LoraPS.sln, searched upwards from the working directory and then from the binaries.</summary>
    static string RepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "LoraPS.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("LoraPS.sln was not found above the working directory; give --out FILE.");
    }
}

/// <summary>The machine a benchmark ran on, so numbers from different machines are not compared by mistake.</summary>
/// <param name="LoadAverage">The 1-minute load average when the report was made (Linux): on a shared machine above the
/// core count, other processes were competing and the times are inflated, small ops (thread-pool barriers) most.</param>
public sealed record MachineInfo(string Os, string Cpu, int LogicalCores, int TorchThreads, string Runtime, string TorchSharp, double? LoadAverage)
{
    public static MachineInfo Current() => new(
        RuntimeInformation.OSDescription,
        CpuModel(),
        Environment.ProcessorCount,
        torch.get_num_threads(),
        RuntimeInformation.FrameworkDescription,
        typeof(torch).Assembly.GetName().Version?.ToString() ?? "?",
        LoadAverageNow());

    static double? LoadAverageNow()
    {
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(first, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? RuntimeInformation.ProcessArchitecture.ToString();
        }
        catch (IOException)
        {
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Cpu}, {LogicalCores} logical cores, torch threads {TorchThreads}, {Runtime}, TorchSharp {TorchSharp}, load average {LoadAverage?.ToString("F2", CultureInfo.InvariantCulture) ?? "?"}");
}
