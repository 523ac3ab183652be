using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>New adapters made from weighted existing ones (PEFT <c>add_weighted_adapter</c>).</summary>
public sealed partial class LoraLinear
{
    /// <summary>
    /// Adds <paramref name="name"/> as a weighted combination of existing adapters (PEFT's
    /// <c>add_weighted_adapter</c> for this layer). The new adapter has α = r (scaling 1), no rsLoRA, the dropout of
    /// the first source, and starts inactive. Sources this layer does not have are skipped, as in PEFT.
    /// </summary>
    /// <param name="adapters">Source adapter names.</param>
    /// <param name="weights">One weight per source; negative weights subtract.</param>
    /// <param name="name">Name of the new adapter.</param>
    /// <param name="combination">How to combine; a single source always uses <see cref="AdapterCombinationType.Linear"/> (PEFT).</param>
    /// <param name="svdRank">Rank for <see cref="AdapterCombinationType.Svd"/>; default the largest source rank.</param>
    /// <param name="svdClamp">Quantile for clamping the SVD factors; null for none.</param>
    public void AddWeightedAdapter(
        IReadOnlyList<string> adapters,
        IReadOnlyList<double> weights,
        string name,
        AdapterCombinationType combination = AdapterCombinationType.Svd,
        int? svdRank = null,
        double? svdClamp = null)
    {
        AdapterCombination.CheckArguments(adapters, weights);
        CheckNewName(name);

        var present = adapters.Zip(weights).Where(p => _options.ContainsKey(p.First)).ToList();
        if (present.Count == 0) throw new KeyNotFoundException($"None of {string.Join(", ", adapters)} is an adapter of this layer; it has {string.Join(", ", _adapters)}.");
        var dora = present.FirstOrDefault(p => _options[p.First].UseDora).First;
        if (dora is not null) throw new NotSupportedException($"Adapter '{dora}' is a DoRA adapter; its magnitude vector has no defined weighted combination.");
        if (adapters.Count == 1) combination = AdapterCombinationType.Linear;

        var ranks = present.Select(p => _options[p.First].Rank).ToList();
        int rank = combination switch
        {
            AdapterCombinationType.Linear when ranks.Distinct().Count() > 1 =>
                throw new ArgumentException($"The linear combination needs equal ranks, got {string.Join(", ", present.Select(p => $"{p.First}: r={_options[p.First].Rank}"))}; use Cat or Svd."),
            AdapterCombinationType.Linear => ranks[0],
            AdapterCombinationType.Cat => ranks.Sum(),
            _ => svdRank ?? ranks.Max(),
        };
        if (combination == AdapterCombinationType.Svd && (rank < 1 || rank > Math.Min(InFeatures, OutFeatures)))
            throw new ArgumentOutOfRangeException(nameof(svdRank), rank, $"The SVD rank must be between 1 and min(in, out) = {Math.Min(InFeatures, OutFeatures)}.");

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var dtype = LoraA(present[0].First).dtype;
        var compute = ComputeDtype(dtype);
        var sources = present.Select(p => new AdapterCombination.Source(
            LoraA(p.First).to(compute), LoraB(p.First).to(compute), _options[p.First].Scaling, p.Second)).ToList();
        var (a, b) = combination switch
        {
            AdapterCombinationType.Linear => AdapterCombination.Linear(sources),
            AdapterCombinationType.Cat => AdapterCombination.Cat(sources),
            _ => AdapterCombination.Svd(sources, rank, svdClamp),
        };
        var options = new LoraLayerOptions { Rank = rank, Alpha = rank, Dropout = _options[present[0].First].Dropout };
        Register(name, options, a.to(dtype), b.to(dtype), null);
    }
}
