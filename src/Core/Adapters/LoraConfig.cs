using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraPS.Adapters;

/// <summary>
/// A LoRA configuration with the meaning of Hugging Face PEFT's <c>LoraConfig</c>, so that an adapter trained here
/// is an ordinary PEFT adapter and a PEFT adapter loads here unchanged.
/// </summary>
/// <remarks>
/// <para>
/// Defaults for a new config follow LitGPT / Raschka where PEFT's are placeholders: r = 8, α = 16 (s = 2),
/// dropout 0.05, and the architecture's query+value projections when <see cref="TargetModules"/> is left unset.
/// Reading an <c>adapter_config.json</c> instead defaults missing keys to PEFT's own defaults
/// (<see cref="PeftAdapterConfig"/>), because that is what the file means to PEFT.
/// </para>
/// <para>
/// Scalar ranges are checked when a property is set; the rules that involve several properties are checked by
/// <see cref="Validate"/>, which <see cref="Resolve"/> and the writer call.
/// </para>
/// </remarks>
public sealed record LoraConfig
{
    int _rank = 8;
    double _alpha = 16;
    double _dropout = 0.05;
    ModuleSelection? _exclude;
    IReadOnlyDictionary<string, int> _rankPattern = new Dictionary<string, int>();
    IReadOnlyDictionary<string, double> _alphaPattern = new Dictionary<string, double>();
    IReadOnlyList<string>? _modulesToSave;
    LoraInit _init = LoraInit.Default;

    /// <summary>PEFT <c>r</c>: the rank of the update.</summary>
    public int Rank { get => _rank; init => _rank = LoraValidation.Rank(value, nameof(Rank)); }

    /// <summary>PEFT <c>lora_alpha</c>: the scaling numerator.</summary>
    public double Alpha { get => _alpha; init => _alpha = LoraValidation.Alpha(value, nameof(Alpha)); }

    /// <summary>PEFT <c>lora_dropout</c>: dropout on the input of the LoRA branch, in [0, 1).</summary>
    public double Dropout { get => _dropout; init => _dropout = LoraValidation.Dropout(value, nameof(Dropout)); }

    /// <summary>
    /// PEFT <c>target_modules</c>. Null means the architecture's default (<see cref="ArchitectureDefaults"/>);
    /// an empty name list targets nothing.
    /// </summary>
    public ModuleSelection? TargetModules { get; init; }

    /// <summary>PEFT <c>exclude_modules</c>: same matching rules, checked before the targets.</summary>
    public ModuleSelection? ExcludeModules
    {
        get => _exclude;
        init => _exclude = value?.Kind == ModuleSelectionKind.AllLinear
            ? throw new ArgumentException("ExcludeModules cannot be 'all-linear'; give names or a regular expression.", nameof(ExcludeModules))
            : value;
    }

    /// <summary>PEFT <c>layers_to_transform</c>: only these layer indices get LoRA (null or empty: all).</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }

    /// <summary>
    /// PEFT <c>layers_pattern</c>: the name(s) of the layer list, e.g. <c>layers</c> or <c>h</c>. Without it the index
    /// is the number after the last <c>.&lt;name&gt;.</c> segment followed by <c>.&lt;digits&gt;.</c>.
    /// </summary>
    public IReadOnlyList<string>? LayersPattern { get; init; }

    /// <summary>
    /// PEFT <c>rank_pattern</c>: per-module ranks. The first key (in enumeration order) for which
    /// <c>re.match(r"(.*\.)?(KEY)$", path)</c> matches wins.
    /// </summary>
    public IReadOnlyDictionary<string, int> RankPattern
    {
        get => _rankPattern;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            foreach (var (key, rank) in value)
            {
                PythonRegex.Validate(key, "The rank_pattern key");
                LoraValidation.Rank(rank, $"{nameof(RankPattern)}[{key}]");
            }
            _rankPattern = value;
        }
    }

    /// <summary>PEFT <c>alpha_pattern</c>: per-module alphas, looked up like <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern
    {
        get => _alphaPattern;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            foreach (var (key, alpha) in value)
            {
                PythonRegex.Validate(key, "The alpha_pattern key");
                LoraValidation.Alpha(alpha, $"{nameof(AlphaPattern)}[{key}]");
            }
            _alphaPattern = value;
        }
    }

    /// <summary>PEFT <c>bias</c>: which biases are trained and saved with the adapter.</summary>
    public LoraBiasMode Bias { get; init; } = LoraBiasMode.None;

    /// <summary>
    /// PEFT <c>modules_to_save</c>: whole modules (e.g. <c>classifier</c>, <c>score</c>) trained and saved in full.
    /// They never get LoRA layers themselves.
    /// </summary>
    public IReadOnlyList<string>? ModulesToSave
    {
        get => _modulesToSave;
        init
        {
            if (value is not null)
            {
                foreach (var name in value)
                {
                    if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("A modules_to_save entry is empty.", nameof(ModulesToSave));
                    PythonRegex.Validate(ModulesToSavePattern(name), "The modules_to_save entry");
                }
            }
            _modulesToSave = value;
        }
    }

    /// <summary>PEFT <c>init_lora_weights</c>.</summary>
    public LoraInit Init { get => _init; init => _init = value ?? throw new ArgumentNullException(nameof(Init)); }

    /// <summary>PEFT <c>use_rslora</c>: scaling α/√r instead of α/r.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>PEFT <c>use_dora</c>: weight-decomposed LoRA.</summary>
    public bool UseDora { get; init; }

    /// <summary>
    /// PEFT <c>fan_in_fan_out</c>: the wrapped layers store W as (in, out), as GPT-2's <c>Conv1D</c> does. LoRA's
    /// A/B shapes do not change; only merged weights are transposed on export.
    /// </summary>
    public bool FanInFanOut { get; init; }

    /// <summary>PEFT <c>lora_bias</c>: a bias on lora_B. Read and written; LoRA layers reject it (not supported).</summary>
    public bool LoraBias { get; init; }

    /// <summary>PEFT <c>task_type</c>.</summary>
    public PeftTaskType? TaskType { get; init; }

    /// <summary>PEFT <c>base_model_name_or_path</c>: the base model the adapter belongs to.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>PEFT <c>revision</c> of the base model.</summary>
    public string? Revision { get; init; }

    /// <summary>Checks the rules that involve several properties; throws <see cref="ArgumentException"/> saying what to change.</summary>
    public void Validate()
    {
        bool regexTarget = TargetModules?.Kind is ModuleSelectionKind.Regex or ModuleSelectionKind.AllLinear;
        // PEFT's LoraConfig.__post_init__: layer filters only apply to list-type target_modules.
        if (regexTarget && LayersToTransform is not null)
            throw new ArgumentException($"LayersToTransform cannot be used when TargetModules is a regular expression or 'all-linear' ({TargetModules}); give a list of module names, or put the layer indices into the pattern.");
        if (regexTarget && LayersPattern is not null)
            throw new ArgumentException($"LayersPattern cannot be used when TargetModules is a regular expression or 'all-linear' ({TargetModules}); give a list of module names instead.");
        if (LayersToTransform is not null && LayersToTransform.Any(i => i < 0))
            throw new ArgumentException($"LayersToTransform holds a negative index ({string.Join(", ", LayersToTransform)}); layer indices start at 0.");
        if (LayersPattern is not null)
        {
            foreach (var p in LayersPattern) PythonRegex.Validate(p, "The layers_pattern entry");
        }
        if (UseDora && LoraBias)
            throw new ArgumentException("UseDora and LoraBias cannot be combined (PEFT rejects this too).");
    }

    /// <summary>
    /// PEFT's <c>check_target_module_exists</c>: is the module at <paramref name="modulePath"/> wrapped by LoRA?
    /// Exclusions first, then <see cref="ModulesToSave"/>, then the targets and the layer filter.
    /// </summary>
    /// <exception cref="InvalidOperationException">The targets are unset or <c>"all-linear"</c>: call <see cref="Resolve"/>.</exception>
    public bool IsTargeted(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        var target = TargetModules;
        if (target is null || target.Kind == ModuleSelectionKind.AllLinear)
            throw new InvalidOperationException($"TargetModules is {(target is null ? "unset" : "'all-linear'")}; resolve it against the model with LoraConfig.Resolve first.");

        if (ExcludeModules is not null && ExcludeModules.Matches(modulePath)) return false;

        // Newer PEFT never puts a LoRA layer inside a module that is trained and saved whole.
        if (ModulesToSave is not null && ModulesToSave.Any(m => PythonRegex.Match(ModulesToSavePattern(m)).IsMatch(modulePath)))
            return false;

        if (target.Kind == ModuleSelectionKind.Regex) return target.Matches(modulePath);
        // An exact full-path entry is taken as is; PEFT applies the layer filter only to suffix matches.
        if (target.IsExactName(modulePath)) return true;
        if (!target.Matches(modulePath)) return false;
        if (LayersToTransform is null || LayersToTransform.Count == 0) return true;

        var index = LayerIndex(modulePath);
        return index is { } i && LayersToTransform.Any(l => l == i);
    }

    /// <summary>
    /// The layer index PEFT reads from a module path: <c>re.match(r".*\.[^.]*\.(\d+)\.", path)</c> without
    /// <see cref="LayersPattern"/> (greedy, so the last <c>.name.N.</c> wins), or <c>.*\.{pattern}\.(\d+)\.</c> for the
    /// first pattern that matches.
    /// </summary>
    public long? LayerIndex(string modulePath)
    {
        Match? m = null;
        if (LayersPattern is null || LayersPattern.Count == 0)
        {
            m = PythonRegex.Match(@".*\.[^.]*\.(\d+)\.").Match(modulePath);
        }
        else
        {
            foreach (var pattern in LayersPattern)
            {
                m = PythonRegex.Match(@".*\." + pattern + @"\.(\d+)\.").Match(modulePath);
                if (m.Success) break;
            }
        }
        return m is { Success: true } && long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var index)
            ? index
            : null;
    }

    /// <summary>
    /// The adapter settings for one module: <see cref="Rank"/> and <see cref="Alpha"/> replaced through
    /// <see cref="RankPattern"/>/<see cref="AlphaPattern"/> (PEFT's <c>get_pattern_key</c>).
    /// </summary>
    public LoraLayerOptions OptionsFor(string modulePath) => new()
    {
        Rank = PatternValue(RankPattern, modulePath, Rank),
        Alpha = PatternValue(AlphaPattern, modulePath, Alpha),
        Dropout = Dropout,
        UseRsLora = UseRsLora,
        UseDora = UseDora,
        Init = Init,
    };

    /// <summary>
    /// Picks the LoRA layers of a model. <paramref name="linearLayers"/> lists every linear layer (Conv1D
    /// included) by HF path and size; <paramref name="outputHeadPath"/> names the output head (<c>lm_head</c>, or the
    /// classifier of a SEQ_CLS model) that <c>"all-linear"</c> leaves out; <paramref name="modelType"/> (the HF
    /// <c>model_type</c>) supplies the default targets when <see cref="TargetModules"/> is unset.
    /// </summary>
    /// <exception cref="ArgumentException">Nothing matched (the message lists the layer names there are), or r exceeds a layer's min(in, out).</exception>
    public LoraResolution Resolve(
        IEnumerable<(string Path, long InFeatures, long OutFeatures)> linearLayers,
        string? outputHeadPath,
        string? modelType = null)
    {
        ArgumentNullException.ThrowIfNull(linearLayers);
        Validate();
        var layers = linearLayers.ToList();
        var duplicate = layers.GroupBy(l => l.Path, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"The linear layer '{duplicate.Key}' is listed twice.", nameof(linearLayers));

        var config = this with { TargetModules = ConcreteTargets(layers, outputHeadPath, modelType) };
        bool skipHead = TargetModules?.Kind == ModuleSelectionKind.AllLinear && outputHeadPath is not null;

        var targets = new List<LoraTarget>();
        foreach (var (path, inFeatures, outFeatures) in layers)
        {
            if (skipHead && path == outputHeadPath) continue;
            if (!config.IsTargeted(path)) continue;
            var options = config.OptionsFor(path);
            long maxRank = Math.Min(inFeatures, outFeatures);
            if (options.Rank > maxRank)
                throw new ArgumentException($"LoRA rank r={options.Rank} is larger than min(in, out) = {maxRank} of layer '{path}' ({inFeatures} -> {outFeatures}); a rank above that adds parameters but no expressiveness. Lower Rank or add a RankPattern entry for this layer.");
            targets.Add(new LoraTarget(path, inFeatures, outFeatures, options));
        }

        if (targets.Count == 0) throw new ArgumentException(NothingMatchedMessage(config, layers), nameof(linearLayers));
        return new LoraResolution(config, targets);
    }

    ModuleSelection ConcreteTargets(List<(string Path, long InFeatures, long OutFeatures)> layers, string? outputHeadPath, string? modelType)
    {
        if (TargetModules is null)
        {
            var defaults = ArchitectureDefaults.DefaultTargetModules(modelType)
                ?? throw new ArgumentException(modelType is null
                    ? "TargetModules is not set and no model type was given to pick the architecture's default; set TargetModules (e.g. q_proj, v_proj, or 'all-linear')."
                    : $"TargetModules is not set and PEFT has no default for model type '{modelType}'; set TargetModules (e.g. 'all-linear'). Known model types: {string.Join(", ", ArchitectureDefaults.KnownModelTypes.Order(StringComparer.Ordinal))}.");
            return ModuleSelection.Names(defaults);
        }
        if (TargetModules.Kind != ModuleSelectionKind.AllLinear) return TargetModules;

        // PEFT's _maybe_include_all_linear_layers: the base names of all linear layers, minus the output head.
        var names = layers
            .Where(l => l.Path != outputHeadPath)
            .Select(l => BaseName(l.Path))
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (names.Length == 0)
            throw new ArgumentException("TargetModules is 'all-linear' but the model has no linear layer apart from its output head.");
        return ModuleSelection.Names(names);
    }

    static string NothingMatchedMessage(LoraConfig config, List<(string Path, long InFeatures, long OutFeatures)> layers)
    {
        var sb = new StringBuilder();
        sb.Append($"LoRA TargetModules {config.TargetModules} matched none of the model's {layers.Count} linear layers");
        if (config.ExcludeModules is not null) sb.Append($" (after ExcludeModules {config.ExcludeModules})");
        if (config.LayersToTransform is { Count: > 0 }) sb.Append($" (LayersToTransform {string.Join(", ", config.LayersToTransform)})");
        sb.Append('.');
        if (layers.Count > 0)
        {
            sb.Append(" The linear layer names are: ")
              .Append(string.Join(", ", layers.Select(l => BaseName(l.Path)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)))
              .Append(" (e.g. ").Append(layers[0].Path).Append(").");
        }
        sb.Append(" Names match a whole path or its last dotted segments, not a substring.");
        return sb.ToString();
    }

    static string BaseName(string path) => path[(path.LastIndexOf('.') + 1)..];

    /// <summary>PEFT: <c>re.match(rf"(^|.*\.){m}($|\..*)", key)</c>; the name is used as a pattern, as PEFT does.</summary>
    static string ModulesToSavePattern(string name) => @"(^|.*\.)" + name + @"($|\..*)";

    /// <summary>PEFT's <c>get_pattern_key</c> followed by <c>pattern.get(key, default)</c>.</summary>
    static T PatternValue<T>(IReadOnlyDictionary<string, T> patterns, string modulePath, T fallback)
    {
        foreach (var (key, value) in patterns)
        {
            if (PythonRegex.Match(@"(.*\.)?(" + key + ")$").IsMatch(modulePath)) return value;
        }
        return fallback;
    }

    /// <summary>Value equality over the lists and dictionaries too, so configs compare by content.</summary>
    public bool Equals(LoraConfig? other) =>
        other is not null
        && Rank == other.Rank && Alpha.Equals(other.Alpha) && Dropout.Equals(other.Dropout)
        && Equals(TargetModules, other.TargetModules) && Equals(ExcludeModules, other.ExcludeModules)
        && SequenceEqual(LayersToTransform, other.LayersToTransform)
        && SequenceEqual(LayersPattern, other.LayersPattern)
        && DictionaryEqual(RankPattern, other.RankPattern) && DictionaryEqual(AlphaPattern, other.AlphaPattern)
        && Bias == other.Bias && SequenceEqual(ModulesToSave, other.ModulesToSave)
        && Init == other.Init && UseRsLora == other.UseRsLora && UseDora == other.UseDora
        && FanInFanOut == other.FanInFanOut && LoraBias == other.LoraBias && TaskType == other.TaskType
        && BaseModelNameOrPath == other.BaseModelNameOrPath && Revision == other.Revision;

    public override int GetHashCode() => HashCode.Combine(Rank, Alpha, Dropout, TargetModules, UseDora, UseRsLora, TaskType);

    static bool SequenceEqual<T>(IReadOnlyList<T>? a, IReadOnlyList<T>? b) =>
        a is null ? b is null : b is not null && a.SequenceEqual(b);

    static bool DictionaryEqual<T>(IReadOnlyDictionary<string, T> a, IReadOnlyDictionary<string, T> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && EqualityComparer<T>.Default.Equals(kv.Value, v));
}
