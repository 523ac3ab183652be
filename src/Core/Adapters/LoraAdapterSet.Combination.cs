using System.Text.RegularExpressions;
using TorchSharp;

namespace LoraPS.Adapters;

/// <summary>New adapters as weighted combinations of existing ones (PEFT <c>add_weighted_adapter</c>).</summary>
public sealed partial class LoraAdapterSet
{
    /// <summary>
    /// Adds <paramref name="name"/> = Σ wᵢ·(adapter i), layer by layer (see <see cref="LoraLinear.AddWeightedAdapter"/>
    /// and <see cref="AdapterCombinationType"/>): <c>Linear</c> mixes A and B (not exact in ΔW, ranks must be equal),
    /// <c>Cat</c> stacks them (exact, rank = Σ rᵢ), <c>Svd</c> truncates the exact Σ wᵢ·ΔWᵢ to <paramref name="svdRank"/>.
    /// The new adapter has α = r (scaling 1), starts inactive, and lives on every layer any source adapts.
    /// </summary>
    /// <remarks>
    /// As in PEFT, the config is the first source's with r = α = the new rank; where a layer's rank differs from it
    /// (rank_pattern in a source, a layer only some sources adapt), rank_pattern/alpha_pattern record the layer's rank so
    /// the saved adapter reloads exactly. Also as in PEFT, modules_to_save copies of the new adapter start from the
    /// original module, not from a source's trained copy.
    /// </remarks>
    /// <exception cref="ArgumentException">Unequal counts, unequal ranks for Linear, mixed kinds of target_modules, or
    /// modules_to_save in more than one source.</exception>
    /// <exception cref="NotSupportedException">A source is a DoRA adapter.</exception>
    public LoraAdapterInfo AddWeighted(
        IReadOnlyList<string> adapters,
        IReadOnlyList<double> weights,
        string name,
        AdapterCombinationType combination = AdapterCombinationType.Svd,
        int? svdRank = null,
        double? svdClamp = null)
    {
        AdapterCombination.CheckArguments(adapters, weights);
        if (weights.Any(w => !double.IsFinite(w))) throw new ArgumentException("Combination weights must be finite numbers.", nameof(weights));
        foreach (var a in adapters) Known(a);
        if (adapters.Distinct(StringComparer.Ordinal).Count() != adapters.Count) throw new ArgumentException("An adapter is listed twice; combine each once with the summed weight.", nameof(adapters));
        CheckNewName(name);
        ThrowIfMerged($"add weighted adapter '{name}'");

        var sources = adapters.Select(a => _adapters[a]).ToList();
        var dora = adapters.FirstOrDefault(a => _adapters[a].Config.UseDora);
        if (dora is not null) throw new NotSupportedException($"Adapter '{dora}' is a DoRA adapter; its magnitude vector has no defined weighted combination.");
        if (sources.Count(s => s.SavedModules.Count > 0) > 1)
            throw new ArgumentException("More than one of these adapters trains modules_to_save copies; PEFT cannot combine those either.", nameof(adapters));
        if (adapters.Count == 1) combination = AdapterCombinationType.Linear;

        int rank = combination switch
        {
            AdapterCombinationType.Linear when sources.Select(s => s.Config.Rank).Distinct().Count() > 1 =>
                throw new ArgumentException($"The linear combination needs equal ranks, got {string.Join(", ", adapters.Select(a => $"{a}: r={_adapters[a].Config.Rank}"))}; use Cat or Svd."),
            AdapterCombinationType.Linear => sources[0].Config.Rank,
            AdapterCombinationType.Cat => sources.Sum(s => s.Config.Rank),
            _ => svdRank ?? sources.Max(s => s.Config.Rank),
        };
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(svdRank), rank, "The new rank must be at least 1.");

        // Layers in model order that any source adapts; each gets the new adapter.
        var layerPaths = PlainModules().Select(m => m.Path).Where(p => _layers.TryGetValue(p, out var l) && adapters.Any(l.Adapters.Contains)).ToList();
        var targets = new List<LoraTarget>();
        LoraConfig config;
        List<string> saved;
        try
        {
            foreach (var path in layerPaths)
            {
                var layer = _layers[path];
                layer.AddWeightedAdapter(adapters, weights, name, combination, combination == AdapterCombinationType.Svd ? rank : null, svdClamp);
                targets.Add(new LoraTarget(path, layer.InFeatures, layer.OutFeatures, layer.Options(name)));
            }
            config = CombinedConfig(sources, rank, targets);
            saved = SavedModuleLeaves(WithClassifierModules(config).ModulesToSave, null, TiedPaths());
            foreach (var path in saved) WrapperAt(path).AddCopy(name);
        }
        catch
        {
            RemoveFromModules(name);
            throw;
        }
        Register(name, new Adapter(config, targets, saved));
        return Get(name);
    }

    /// <summary>
    /// The saved config of a combined adapter: the first source's, with r = α = <paramref name="rank"/>, no rsLoRA
    /// (the factors already carry every scaling), the union of the sources' target_modules, and per-layer patterns
    /// where a layer's rank differs. If those targets would select other layers, the exact paths are used instead.
    /// </summary>
    LoraConfig CombinedConfig(List<Adapter> sources, int rank, List<LoraTarget> targets)
    {
        var selections = sources.Select(s => s.Config.TargetModules!).ToList();
        ModuleSelection union;
        if (selections.All(s => s.Kind == ModuleSelectionKind.Names))
            union = ModuleSelection.Names(selections.SelectMany(s => s.ModuleNames));
        else if (selections.All(s => s.Kind == ModuleSelectionKind.Regex))
            union = ModuleSelection.Regex(string.Join("|", selections.Select(s => $"({s.Pattern})")));
        else
            throw new ArgumentException("The adapters mix list and regular-expression target_modules; PEFT cannot combine those either.");

        var differing = targets.Where(t => t.Rank != rank).ToList();
        var patterns = differing.ToDictionary(t => Regex.Escape(t.Path), t => t.Rank);
        var config = sources[0].Config with
        {
            Rank = rank,
            Alpha = rank,
            UseRsLora = false,
            Init = LoraInit.Default,
            TargetModules = union,
            RankPattern = patterns,
            AlphaPattern = patterns.ToDictionary(kv => kv.Key, kv => (double)kv.Value),
        };
        var selected = TryResolvePaths(config);
        if (selected is null || !selected.SequenceEqual(targets.Select(t => t.Path)))
        {
            config = config with
            {
                TargetModules = ModuleSelection.Names(targets.Select(t => t.Path)),
                LayersToTransform = null,
                LayersPattern = null,
                ExcludeModules = null,
            };
        }
        return config;
    }

    List<string>? TryResolvePaths(LoraConfig config)
    {
        try
        {
            return Plan(config, strictModulesToSave: false).Targets.Select(t => t.Path).ToList();
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            return null;
        }
    }
}
