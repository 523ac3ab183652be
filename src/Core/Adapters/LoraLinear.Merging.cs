using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>Folding adapters into W and back (PEFT <c>get_delta_weight</c>, <c>merge</c>, <c>unmerge</c>).</summary>
public sealed partial class LoraLinear
{
    /// <summary>
    /// ΔW = s·B·A for <paramref name="adapter"/>, shape (out, in), in float32 (or the adapter dtype if wider).
    /// Differentiable; for DoRA this is the directional update only, not the merged change.
    /// </summary>
    public Tensor DeltaWeight(string adapter)
    {
        var options = Options(adapter);
        using var scope = NewDisposeScope();
        var dtype = ComputeDtype(LoraA(adapter).dtype);
        var delta = LoraB(adapter).to(dtype).matmul(LoraA(adapter).to(dtype)) * options.Scaling;
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// DoRA's ‖W + s·B·A‖₂ per output row for <paramref name="adapter"/> (detached), shape (out). Meaningful while
    /// the adapter is not merged (W must be the base weight).
    /// </summary>
    public Tensor DoraWeightNorm(string adapter)
    {
        var options = Options(adapter);
        using var scope = NewDisposeScope();
        return WeightNorm(ReadBaseWeight(), LoraB(adapter), LoraA(adapter), options.Scaling).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Folds adapters into W: W += s·B·A, or for DoRA W = (m/‖W + s·B·A‖)·(W + s·B·A) with the norm cached for
    /// <see cref="Unmerge"/>. Computed in float32 and cast back to W's dtype. Adapters already merged are skipped,
    /// so merging twice equals merging once.
    /// </summary>
    /// <param name="adapters">Adapters to merge; null merges the active ones.</param>
    /// <param name="safeMerge">Check the result for NaN/Inf before writing it (PEFT's <c>safe_merge</c>).</param>
    /// <returns>The adapters merged by this call.</returns>
    public IReadOnlyList<string> Merge(IEnumerable<string>? adapters = null, bool safeMerge = false)
    {
        var toMerge = Unmerged(adapters);
        if (toMerge.Count > 0 && IsBaseQuantized)
            throw new InvalidOperationException("This layer's base weight is quantized; merging into it in place would re-quantize W + ΔW and lose the adapter's precision. Write a merged full-precision checkpoint instead (MergeAndSave / Merge-LoraAdapter -Path), which dequantizes first.");
        var weight = BaseLayer.weight!;
        foreach (var adapter in toMerge)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var merged = MergeStep(weight.to(ScalarType.Float32), adapter, out var norm);
            if (safeMerge && !merged.isfinite().all().item<bool>())
                throw new InvalidOperationException($"Merging adapter '{adapter}' would put NaN or Inf into the weight; the weight was left unchanged.");
            if (norm is not null) _doraMergeNorms[adapter] = norm.DetachFromDisposeScope();
            weight.copy_(merged.to(weight.dtype));
            _merged.Add(adapter);
        }
        return toMerge;
    }

    /// <summary>
    /// The weight <see cref="Merge"/> would produce, without changing the layer: the current W (which already holds
    /// the merged adapters) with <paramref name="adapters"/> folded in, in W's dtype and (out, in) layout. For a
    /// quantized base: the dequantized W (float32) plus ΔW, in the compute dtype — never re-quantized. Used to
    /// export a merged checkpoint while the model keeps its adapters.
    /// </summary>
    /// <param name="adapters">Adapters to fold in; null folds in the active ones. Already merged ones are skipped.</param>
    public Tensor MergedWeight(IEnumerable<string>? adapters = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // A quantized base is dequantized (float32) here and the result is given in its compute dtype, unquantized.
        var w = ReadBaseWeight().to(ScalarType.Float32);
        foreach (var adapter in Unmerged(adapters)) w = MergeStep(w, adapter, out _);
        return w.to(BaseDType).MoveToOuterDisposeScope();
    }

    List<string> Unmerged(IEnumerable<string>? adapters) =>
        (adapters ?? _active).Select(Known).Distinct(StringComparer.Ordinal).Where(a => !_merged.Contains(a)).ToList();

    /// <summary>
    /// One adapter folded into the float32 weight <paramref name="w"/>: W + s·B·A, or for DoRA
    /// (m/‖W + s·B·A‖)·(W + s·B·A), returning the norm in <paramref name="doraNorm"/> for <see cref="Unmerge"/>.
    /// </summary>
    Tensor MergeStep(Tensor w, string adapter, out Tensor? doraNorm)
    {
        var delta = DeltaWeight(adapter).to(ScalarType.Float32);
        doraNorm = null;
        if (Magnitude(adapter) is not { } m) return w + delta;
        // scaling is already inside delta, so the norm uses s = 1 here.
        doraNorm = linalg.norm(w + delta, dims: [1]);
        return (m.to(ScalarType.Float32) / doraNorm).view(-1, 1) * (w + delta);
    }

    /// <summary>Undoes every merge, newest first: W −= s·B·A, or for DoRA W = W/(m/‖·‖cached) − s·B·A.</summary>
    /// <returns>The adapters unmerged, in the order they were undone.</returns>
    public IReadOnlyList<string> Unmerge()
    {
        var undone = new List<string>();
        if (_merged.Count == 0) return undone;
        var weight = BaseLayer.weight!;
        while (_merged.Count > 0)
        {
            var adapter = _merged[^1];
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var w = weight.to(ScalarType.Float32);
            var delta = DeltaWeight(adapter).to(ScalarType.Float32);
            Tensor restored;
            if (_doraMergeNorms.Remove(adapter, out var norm))
            {
                // The cache does not follow Module.to(device); bring it to the weight.
                var factor = Magnitude(adapter)!.to(ScalarType.Float32) / norm.to(w.device);
                restored = w / factor.view(-1, 1) - delta;
                norm.Dispose();
            }
            else
            {
                restored = w - delta;
            }
            weight.copy_(restored.to(weight.dtype));
            _merged.RemoveAt(_merged.Count - 1);
            undone.Add(adapter);
        }
        return undone;
    }
}
