using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using LoraPS.Adapters;

namespace LoraPS.Training;

/// <summary>The model a run trained, as run.json records it.</summary>
/// <remarks><c>Quantization</c> is the format of the frozen base weights (<c>nf4-dq</c>, …) or null for none.</remarks>
public sealed record RunModelSummary(string Path, string Name, string Architecture, string Precision, string Device, int Layers,
    int HiddenSize, int VocabSize, long TotalParameters, long TrainableParameters, string? Quantization = null);

/// <summary>The adapter a run trained, as run.json records it.</summary>
public sealed record RunAdapterSummary(string Name, int Rank, double Alpha, double Dropout, bool UseDora, bool UseRsLora, IReadOnlyList<string> Targets);

/// <summary>The data a run trained on, as run.json records it; a resumed run must bring data with the same fingerprint.</summary>
public sealed record RunDataSummary(string Fingerprint, string Format, int TrainExamples, int ValidationExamples, long TrainTokens);

/// <summary>The content of a run folder's <c>run.json</c>: everything needed to repeat or resume the run.</summary>
public sealed record RunManifest(string LoraPSVersion, string TorchSharpVersion, DateTimeOffset Created, TrainingOptions Options,
    RunModelSummary Model, RunAdapterSummary Adapter, RunDataSummary Data, long Seed, long MaxSteps, int AccumulationSteps, int BatchesPerEpoch);

/// <summary>Where a checkpoint is in its run: restored on resume so the run continues exactly.</summary>
internal sealed class TrainerState
{
    public long Step { get; set; }
    /// <summary>Micro-batches consumed: the position in the sampler's run-wide batch stream and the dropout seed index.</summary>
    public long MicroBatches { get; set; }
    public long Tokens { get; set; }
    public double ElapsedSeconds { get; set; }
    public double? LastTrainLoss { get; set; }
    public double? BestTrainLoss { get; set; }
    public double? BestValidationLoss { get; set; }
    public ValidationMetrics? LastValidation { get; set; }
    public ValidationMetrics? InitialValidation { get; set; }
    public long MaxSteps { get; set; }
    public long Seed { get; set; }
    public int BatchesPerEpoch { get; set; }
    public int MicroBatchSize { get; set; }
    public string DataFingerprint { get; set; } = "";
    public string AdapterName { get; set; } = "";
}

/// <summary>
/// The files of a run folder:
/// <code>
/// run.json                      options, model/adapter/data summary, versions, seed
/// metrics.jsonl                 one JSON line per step
/// checkpoints/step-000100/      adapter/ (PEFT), optimizer.safetensors, trainer_state.json
/// checkpoints/latest            the newest checkpoint's folder name, written after it is complete
/// final/                        the trained adapter (PEFT)
/// trainer_state.json            the state at the end, written when the run completed (Resume refuses such a run)
/// </code>
/// </summary>
internal sealed class RunFolder
{
    public const string ManifestFile = "run.json";
    public const string MetricsFile = "metrics.jsonl";
    public const string CheckpointsFolder = "checkpoints";
    public const string LatestFile = "latest";
    public const string FinalFolder = "final";
    public const string AdapterFolder = "adapter";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
    };

    static readonly JsonSerializerOptions JsonLine = new(Json) { WriteIndented = false };

    public RunFolder(string root) => Root = Path.GetFullPath(root);

    public string Root { get; }
    public string Manifest => Path.Combine(Root, ManifestFile);
    public string Metrics => Path.Combine(Root, MetricsFile);
    public string Checkpoints => Path.Combine(Root, CheckpointsFolder);
    public string Final => Path.Combine(Root, FinalFolder);

    /// <summary>The PEFT folder of adapter <paramref name="name"/> under <paramref name="root"/> (PEFT puts <c>default</c> in the root itself).</summary>
    public static string AdapterPath(string root, string name) =>
        name == PeftStateDictKeys.DefaultAdapterName ? root : Path.Combine(root, name);

    public static string CheckpointName(long step) => "step-" + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Creates the folder for a new run; refuses one that already holds a run.</summary>
    public void CreateNew(RunManifest manifest)
    {
        if (File.Exists(Root)) throw new IOException($"'{Root}' is a file; give a folder for the run.");
        if (File.Exists(Manifest))
            throw new IOException($"'{Root}' already holds a training run ({ManifestFile}). Resume it with LoraTrainer.Resume, or choose another OutputDirectory.");
        Directory.CreateDirectory(Root);
        WriteAtomically(Manifest, JsonSerializer.Serialize(manifest, Json));
        File.WriteAllText(Metrics, "");
    }

    public RunManifest ReadManifest()
    {
        if (!File.Exists(Manifest))
            throw new FileNotFoundException($"'{Root}' is not a LoraPS run folder: it has no {ManifestFile}.", Manifest);
        return JsonSerializer.Deserialize<RunManifest>(File.ReadAllText(Manifest), Json)
            ?? throw new InvalidDataException($"'{Manifest}' is empty.");
    }

    public void AppendMetrics(IReadOnlyDictionary<string, object?> line) =>
        File.AppendAllText(Metrics, JsonSerializer.Serialize(line, JsonLine) + "\n");

    /// <summary>Drops metric lines of steps after <paramref name="step"/> (written after the checkpoint a run resumes from).</summary>
    public void TruncateMetrics(long step)
    {
        if (!File.Exists(Metrics)) return;
        var kept = File.ReadAllLines(Metrics).Where(l => l.Length > 0 && JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64() <= step);
        WriteAtomically(Metrics, string.Concat(kept.Select(l => l + "\n")));
    }

    /// <summary>
    /// Writes checkpoint <paramref name="step"/>: <paramref name="write"/> fills a temporary folder that is then renamed
    /// into place, and only then is <c>latest</c> pointed at it, so <c>latest</c> always names a complete checkpoint.
    /// </summary>
    public string WriteCheckpoint(long step, Action<string> write, int? keep)
    {
        var name = CheckpointName(step);
        var folder = Path.Combine(Checkpoints, name);
        AtomicFolder.Replace(folder, replace: true, write);
        WriteAtomically(Path.Combine(Checkpoints, LatestFile), name);
        if (keep is { } k)
        {
            foreach (var old in CheckpointFolders().SkipLast(k)) Directory.Delete(old, recursive: true);
        }
        return folder;
    }

    /// <summary>The checkpoint <c>latest</c> names, or null when none was written.</summary>
    public string? LatestCheckpoint()
    {
        var pointer = Path.Combine(Checkpoints, LatestFile);
        if (!File.Exists(pointer)) return null;
        var folder = Path.Combine(Checkpoints, File.ReadAllText(pointer).Trim());
        if (!File.Exists(Path.Combine(folder, StateFile)))
            throw new InvalidDataException($"'{pointer}' names '{folder}', which is not a complete checkpoint (no {StateFile}).");
        return folder;
    }

    IEnumerable<string> CheckpointFolders() => Directory.Exists(Checkpoints)
        ? Directory.EnumerateDirectories(Checkpoints, "step-*").Order(StringComparer.Ordinal)
        : [];

    /// <summary>Writes a file beside its target and renames it over the target.</summary>
    public static void WriteAtomically(string path, string content)
    {
        var temp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            File.WriteAllText(temp, content);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public static string VersionOf(Assembly assembly) =>
        assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? assembly.GetName().Version?.ToString() ?? "unknown";
}
