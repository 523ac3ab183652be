using LoraPS.Adapters;
using LoraPS.Models;

namespace LoraPS.Module.Adapters;

/// <summary>One LoRA adapter on a model: its settings, state, and PEFT-style parameter counts.</summary>
/// <remarks>
/// TrainableParameters/TotalParameters/TrainablePercent are the whole model's counts at the time the record was
/// made, exactly what PEFT's <c>print_trainable_parameters</c> prints; AdapterParameters counts this adapter alone.
/// </remarks>
/// <param name="Name">The adapter name (PEFT's default is <c>default</c>).</param>
/// <param name="Rank">LoRA rank r (layers with a rank_pattern entry may differ).</param>
/// <param name="Alpha">LoRA alpha; the update is scaled by alpha/r (alpha/√r with rsLoRA).</param>
/// <param name="TargetCount">How many layers carry this adapter.</param>
/// <param name="TargetModules">The target_modules setting as saved.</param>
/// <param name="IsActive">The forward uses it.</param>
/// <param name="IsMerged">It is folded into the base weights (Merge-LoraAdapter -InPlace).</param>
/// <param name="IsTrainable">It gets gradients while active (false when imported for inference).</param>
/// <param name="AdaptersDisabled">All adapters of the model are switched off (Set-LoraAdapter -Disable).</param>
/// <param name="AdapterParameters">Elements of this adapter's LoRA factors, DoRA magnitudes and module copies.</param>
/// <param name="TrainableParameters">Parameters of the model that require gradients.</param>
/// <param name="TotalParameters">All parameters of the model, adapters included.</param>
/// <param name="TrainablePercent">100 · trainable / total.</param>
/// <param name="Config">The full resolved config, as Save-LoraAdapter writes it.</param>
/// <param name="Model">The model the adapter lives on, so the record can be piped to other adapter cmdlets.</param>
public sealed record LoraAdapterState(
    string Name,
    int Rank,
    double Alpha,
    int TargetCount,
    string? TargetModules,
    bool IsActive,
    bool IsMerged,
    bool IsTrainable,
    bool AdaptersDisabled,
    long AdapterParameters,
    long TrainableParameters,
    long TotalParameters,
    double TrainablePercent,
    LoraConfig Config,
    LoraModel Model)
{
    /// <summary>The state of adapter <paramref name="name"/> on <paramref name="model"/> now.</summary>
    public static LoraAdapterState Of(LoraModel model, string name)
    {
        var set = model.Adapters;
        var info = set.Get(name);
        var counts = set.CountParameters();
        bool merged = info.Targets.Any(t => set.LoraLayers[t.Path].MergedAdapters.Contains(name));
        return new LoraAdapterState(info.Name, info.Config.Rank, info.Config.Alpha, info.Targets.Count,
            info.Config.TargetModules?.ToString(), info.IsActive, merged, info.IsTrainable, set.AdaptersDisabled,
            info.ParameterCount, counts.Trainable, counts.Total, counts.TrainablePercent, info.Config, model);
    }

    /// <summary>The adapter name.</summary>
    public override string ToString() => Name;
}

/// <summary>An adapter folder written by Save-LoraAdapter.</summary>
/// <param name="Name">The adapter saved.</param>
/// <param name="Path">The folder holding adapter_config.json and adapter_model.safetensors.</param>
/// <param name="Files">The files written, relative to <paramref name="Path"/>.</param>
public sealed record LoraAdapterSaveResult(string Name, string Path, IReadOnlyList<string> Files);

/// <summary>A merged Hugging Face checkpoint written by Merge-LoraAdapter.</summary>
/// <param name="Path">The checkpoint folder; Import-LoraModel loads it as an ordinary model.</param>
/// <param name="MergedAdapters">The adapters folded into the weights (the active ones).</param>
/// <param name="Files">The files in the folder.</param>
/// <param name="DequantizedFrom">
/// The format of a quantized (QLoRA) base, e.g. <c>nf4-dq</c>, whose weights were dequantized and written unquantized
/// in <paramref name="WeightDType"/>; null when the base was not quantized.
/// </param>
/// <param name="WeightDType">The dtype of the written weights (float32, bfloat16).</param>
public sealed record LoraMergeResult(string Path, IReadOnlyList<string> MergedAdapters, IReadOnlyList<string> Files,
    string? DequantizedFrom = null, string? WeightDType = null);
