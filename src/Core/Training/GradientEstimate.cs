using LoraPS.Adapters;
using LoraPS.Checkpoints;
using LoraPS.Data;
using LoraPS.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// The mean full-weight gradient of each target layer over some batches (LoRA-GA's step 1), in float32, by HF module
/// path. It can be saved as safetensors (keys <c>&lt;path&gt;.weight</c>, as the fixtures' grads.safetensors) and
/// reused, e.g. to try other directions or scales without running the model again.
/// </summary>
public sealed class GradientEstimate : IDisposable
{
    /// <summary>Metadata key for the number of batches averaged.</summary>
    public const string BatchesKey = "lora_ga.batches";
    /// <summary>Metadata key for the mean loss of those batches.</summary>
    public const string LossKey = "lora_ga.mean_loss";

    readonly Dictionary<string, Tensor> _gradients;

    internal GradientEstimate(Dictionary<string, Tensor> gradients, int batches, double meanLoss)
    {
        _gradients = gradients;
        Batches = batches;
        MeanLoss = meanLoss;
    }

    /// <summary>Mean dL/dW, (out, in), float32, by module path.</summary>
    public IReadOnlyDictionary<string, Tensor> Gradients => _gradients;

    /// <summary>Batches averaged.</summary>
    public int Batches { get; }

    /// <summary>Mean training loss over those batches.</summary>
    public double MeanLoss { get; }

    /// <summary>Writes the gradients atomically to a safetensors file.</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [BatchesKey] = Batches.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [LossKey] = MeanLoss.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        };
        SafetensorsWriter.Write(path, _gradients.OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => new KeyValuePair<string, Tensor>(g.Key + ".weight", g.Value)), metadata);
    }

    /// <summary>Reads gradients written by <see cref="Save"/> (or any safetensors file of <c>&lt;path&gt;.weight</c> gradients).</summary>
    /// <exception cref="CheckpointFormatException">The file is not readable safetensors.</exception>
    public static GradientEstimate Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var file = SafetensorsFile.Open(path);
        var gradients = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var entry in file.Entries.Where(e => e.Name.EndsWith(".weight", StringComparison.Ordinal)))
            gradients[entry.Name[..^".weight".Length]] = file.ReadTensor(entry.Name).to(ScalarType.Float32).DetachFromDisposeScope();
        var meta = file.Metadata;
        int batches = meta is not null && meta.TryGetValue(BatchesKey, out var b) && int.TryParse(b, System.Globalization.CultureInfo.InvariantCulture, out var nb) ? nb : 0;
        double loss = meta is not null && meta.TryGetValue(LossKey, out var l) && double.TryParse(l, System.Globalization.CultureInfo.InvariantCulture, out var ml) ? ml : double.NaN;
        return new GradientEstimate(gradients, batches, loss);
    }

    /// <summary>
    /// Runs forward and backward of the training loss on each batch with only the target weights requiring grad, and
    /// averages dL/dW over the batches (the official <c>estimate_gradient</c>; the model runs in train mode).
    /// </summary>
    /// <remarks>
    /// Memory: float32 weights let autograd sum into their own <c>.grad</c> across batches (no second copy, as PEFT's
    /// <c>preprocess_loraga</c>); other dtypes add each batch's gradient into one float32 buffer per layer and zero
    /// the half-precision one. So beside the model and one batch's activations there is one gradient per target
    /// weight — never one per batch. Every requires_grad flag is restored afterwards and the gradients are freed.
    /// </remarks>
    /// <param name="model">The model; its adapters should be disabled (the gradient is the base model's).</param>
    /// <param name="targetPaths">HF paths of the plain float Linear layers (or LoRA layers, whose base weight is used).</param>
    /// <param name="batches">The batches; each is disposed after use.</param>
    /// <param name="progress">Called after each batch with (done, total when known, loss).</param>
    /// <param name="cancellationToken">Checked before each batch; throws <see cref="OperationCanceledException"/>, model untouched.</param>
    /// <exception cref="NotSupportedException">A target is not a plain floating-point Linear (e.g. quantized).</exception>
    public static GradientEstimate Estimate(TransformerModel model, IReadOnlyList<string> targetPaths, IEnumerable<TrainingBatch> batches,
        IProgress<(int Done, double Loss)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(targetPaths);
        ArgumentNullException.ThrowIfNull(batches);
        var weights = targetPaths.Select(p => (Path: p, Weight: LoraAdapterSet.BaseWeightOf(model.GetModule(p), p))).ToList();
        var parameters = model.parameters().ToList();
        var wasRequiring = parameters.Select(p => p.requires_grad).ToList();
        bool wasTraining = model.training;
        var buffers = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        int done = 0;
        double lossSum = 0;
        try
        {
            foreach (var p in parameters) p.requires_grad = false;
            foreach (var (_, w) in weights)
            {
                w.grad?.Dispose();
                w.grad = null;
                w.requires_grad = true;
            }
            model.train();
            foreach (var batch in batches)
            {
                using (batch)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var output = model.Forward(batch.InputIds, batch.AttentionMask, tokenTypeIds: batch.TokenTypeIds);
                    var loss = model.ComputeLoss(output, batch.Labels);
                    double value = loss.item<float>();
                    if (!double.IsFinite(value)) throw new TrainingDivergedException(0, "loss", value, null);
                    loss.backward();
                    using (no_grad())
                    {
                        foreach (var (path, w) in weights)
                        {
                            if (w.dtype == ScalarType.Float32) continue; // summed by autograd in w.grad
                            var g = w.grad!;
                            if (buffers.TryGetValue(path, out var buffer)) buffer.add_(g.to(ScalarType.Float32));
                            else buffers[path] = g.to(ScalarType.Float32).DetachFromDisposeScope();
                            g.zero_();
                        }
                    }
                    lossSum += value;
                    done++;
                    progress?.Report((done, value));
                }
            }
            if (done == 0) throw new ArgumentException("There were no batches to estimate the gradient from.", nameof(batches));
            var gradients = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            using (no_grad())
            {
                foreach (var (path, w) in weights)
                {
                    var sum = buffers.Remove(path, out var buffer) ? buffer : w.grad!;
                    gradients[path] = (sum / done).DetachFromDisposeScope();
                    if (!ReferenceEquals(sum, w.grad)) sum.Dispose();
                }
            }
            return new GradientEstimate(gradients, done, lossSum / done);
        }
        finally
        {
            foreach (var (_, w) in weights)
            {
                w.grad?.Dispose();
                w.grad = null;
            }
            foreach (var buffer in buffers.Values) buffer.Dispose();
            for (int i = 0; i < parameters.Count; i++) parameters[i].requires_grad = wasRequiring[i];
            if (!wasTraining) model.eval();
        }
    }

    public void Dispose()
    {
        foreach (var g in _gradients.Values) g.Dispose();
        _gradients.Clear();
    }
}
