using System.Diagnostics;
using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>Which part of a LoRA-GA initialisation is running.</summary>
public enum LoraGaPhase
{
    /// <summary>Forward + backward over the estimation batches.</summary>
    Gradients,
    /// <summary>One SVD per target layer and the base-weight rewrite.</summary>
    Decomposition,
}

/// <summary>Reported after each batch and each layer, synchronously on the calling thread.</summary>
/// <param name="Phase">Gradients or Decomposition.</param>
/// <param name="Done">Batches (or layers) done.</param>
/// <param name="Total">Batches (or layers) in the phase.</param>
/// <param name="Loss">The batch's loss (Gradients only).</param>
/// <param name="Layer">The layer just decomposed (Decomposition only).</param>
public sealed record LoraGaProgress(LoraGaPhase Phase, int Done, int Total, double? Loss, string? Layer)
{
    public double PercentComplete => Total == 0 ? 100 : 100.0 * Done / Total;
}

/// <summary>What a LoRA-GA initialisation did.</summary>
/// <param name="AdapterName">The adapter added.</param>
/// <param name="Layers">Layers initialised (and base weights rewritten).</param>
/// <param name="Batches">Batches the gradient was averaged over.</param>
/// <param name="BatchSize">Examples per batch.</param>
/// <param name="MeanLoss">Mean training loss of those batches (before any training).</param>
/// <param name="GradientTime">Time of the gradient estimate (zero when a cache was reused).</param>
/// <param name="DecompositionTime">Time of the SVDs and weight rewrite.</param>
/// <param name="PeakMemoryBytes">The process's peak resident memory afterwards (VmHWM) — process-wide.</param>
/// <param name="GradientCachePath">The gradient file written or read, if any.</param>
/// <param name="UsedCachedGradients">True when the gradients were read from <paramref name="GradientCachePath"/>.</param>
/// <param name="Options">The settings used.</param>
public sealed record LoraGaResult(string AdapterName, int Layers, int Batches, int BatchSize, double MeanLoss, TimeSpan GradientTime,
    TimeSpan DecompositionTime, long PeakMemoryBytes, string? GradientCachePath, bool UsedCachedGradients, LoraGaOptions Options)
{
    public TimeSpan Elapsed => GradientTime + DecompositionTime;
}

/// <summary>
/// LoRA-GA (Wang, Yu, Li 2024; spec notes §2): adds an adapter whose A and B come from the singular vectors of the
/// estimated full-weight gradient, and rewrites each base weight to W − s·B·A so the model's output is unchanged.
/// The first LoRA step then follows full fine-tuning's direction. The one entry point of <c>Initialize-LoraGA</c>.
/// </summary>
/// <remarks>
/// The paper pairs it with rsLoRA (s = α/√r) and the stable scale; set <see cref="LoraConfig.UseRsLora"/> for that.
/// The adapter is saved converted for the original base by default (<see cref="LoraAdapterSet.Save"/>), because the
/// model's base weights changed. Runs synchronously; progress is reported on the calling thread.
/// </remarks>
public static class LoraGaInitializer
{
    /// <summary>
    /// Estimates gradients on <paramref name="data"/> (or reads them from <paramref name="gradientCachePath"/> when the
    /// file exists; writes them there otherwise), then adds adapter <paramref name="name"/> initialised by LoRA-GA.
    /// </summary>
    /// <param name="adapters">The model's adapter set; the gradient is the base model's (other adapters are disabled meanwhile).</param>
    /// <param name="name">The new adapter's name.</param>
    /// <param name="config">Targets, rank, alpha, rsLoRA; its <c>init_lora_weights</c> is saved as <c>lora_ga</c>.</param>
    /// <param name="data">Training data; batches are drawn in a seeded random order (<see cref="LoraGaOptions.Seed"/>), cycling if it is short.</param>
    /// <param name="options">LoRA-GA settings.</param>
    /// <param name="gradientCachePath">A safetensors file to reuse or to write the gradients to; null for neither.</param>
    /// <param name="progress">Progress per batch and per layer.</param>
    /// <param name="cancellationToken">Checked per batch and per layer; on cancellation nothing is changed.</param>
    /// <exception cref="NotSupportedException">A target layer is not a plain floating-point Linear (quantized), or DoRA.</exception>
    /// <exception cref="ArgumentException">2r exceeds a layer's size, the cache lacks a target, or the data does not fit the model.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model is unchanged.</exception>
    public static LoraGaResult Initialize(LoraAdapterSet adapters, string name, LoraConfig config, PreparedData? data, LoraGaOptions options,
        string? gradientCachePath = null, IProgress<LoraGaProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        config = config with { Init = LoraInit.LoraGA };
        var targets = adapters.ResolveTargets(config);
        foreach (var t in targets) LoraAdapterSet.BaseWeightOf(adapters.Model.GetModule(t.Path), t.Path);

        var clock = Stopwatch.StartNew();
        bool cached = gradientCachePath is not null && File.Exists(gradientCachePath);
        using var estimate = cached
            ? GradientEstimate.Load(gradientCachePath!)
            : EstimateOn(adapters, targets.Select(t => t.Path).ToList(), data ?? throw new ArgumentNullException(nameof(data), "Give training data to estimate the gradients from, or an existing gradient cache."), options, progress, cancellationToken);
        var missing = targets.FirstOrDefault(t => !estimate.Gradients.ContainsKey(t.Path));
        if (missing is not null)
            throw new ArgumentException($"The gradient cache '{gradientCachePath}' has no gradient for '{missing.Path}'; it was estimated for other target modules. Delete it or pick another path to estimate again.", nameof(gradientCachePath));
        if (!cached && gradientCachePath is not null) estimate.Save(gradientCachePath);
        var gradientTime = cached ? TimeSpan.Zero : clock.Elapsed;

        clock.Restart();
        using var generator = new Generator(unchecked((ulong)options.Seed));
        var layerProgress = progress is null ? null : new SynchronousProgress<(int Done, int Total, string Path)>(p => progress.Report(new LoraGaProgress(LoraGaPhase.Decomposition, p.Done, p.Total, null, p.Path)));
        adapters.AddWithInitialFactors(name, config,
            (target, weight) =>
            {
                var gradient = estimate.Gradients[target.Path];
                if (!gradient.shape.SequenceEqual(weight.shape))
                    throw new ArgumentException($"The cached gradient of '{target.Path}' is [{string.Join(", ", gradient.shape)}] but the weight is [{string.Join(", ", weight.shape)}]; the cache belongs to another model.");
                return LoraGaFactors.Compute(gradient, weight, target.Rank, target.Scaling, options, generator);
            }, layerProgress, cancellationToken);
        var decompositionTime = clock.Elapsed;
        return new LoraGaResult(name, targets.Count, estimate.Batches, options.BatchSize, estimate.MeanLoss, gradientTime, decompositionTime,
            RuntimeInspector.ProcessMemory().Peak, gradientCachePath is null ? null : Path.GetFullPath(gradientCachePath), cached, options);
    }

    static GradientEstimate EstimateOn(LoraAdapterSet adapters, IReadOnlyList<string> paths, PreparedData data, LoraGaOptions options,
        IProgress<LoraGaProgress>? progress, CancellationToken cancellationToken)
    {
        if (data.Train.Count == 0) throw new ArgumentException("There are no training examples to estimate the gradients from.", nameof(data));
        var model = adapters.Model;
        var sampler = new BatchSampler(data.Train.Lengths, options.BatchSize, options.Seed, BatchOrdering.Random);
        var collate = new CollateOptions { Device = model.Device, IgnoreIndex = Losses.IgnoreIndex };
        IEnumerable<TrainingBatch> Batches()
        {
            for (int i = 0; i < options.Batches; i++)
            {
                var (epoch, index) = sampler.Locate(i);
                yield return BatchCollator.Collate(sampler.Batch(epoch, index).Select(j => data.Train[j]).ToList(), collate);
            }
        }
        var batchProgress = progress is null ? null : new SynchronousProgress<(int Done, double Loss)>(p => progress.Report(new LoraGaProgress(LoraGaPhase.Gradients, p.Done, options.Batches, p.Loss, null)));
        using var disabled = adapters.Names.Count > 0 ? adapters.DisabledScope() : null;
        return GradientEstimate.Estimate(model, paths, Batches(), batchProgress, cancellationToken);
    }

    /// <summary>An <see cref="IProgress{T}"/> that calls back on the reporting thread (Progress&lt;T&gt; would post elsewhere).</summary>
    sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
