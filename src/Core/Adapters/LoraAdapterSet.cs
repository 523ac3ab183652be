using LoraPS.Models;
using LoraPS.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>One adapter on a model, as <see cref="LoraAdapterSet"/> reports it.</summary>
/// <param name="Name">The adapter name (PEFT's default is <c>default</c>).</param>
/// <param name="Config">The resolved config, exactly what <see cref="LoraAdapterSet.Save"/> writes.</param>
/// <param name="Targets">The wrapped layers with their rank, alpha and scaling.</param>
/// <param name="SavedModules">Module paths trained and saved whole (modules_to_save), per parameter-holding layer.</param>
/// <param name="IsActive">The forward uses it.</param>
/// <param name="IsTrainable">Its parameters get gradients when it is active (false after loading for inference).</param>
/// <param name="ParameterCount">Elements of its LoRA factors, DoRA magnitudes and module copies.</param>
public sealed record LoraAdapterInfo(
    string Name,
    LoraConfig Config,
    IReadOnlyList<LoraTarget> Targets,
    IReadOnlyList<string> SavedModules,
    bool IsActive,
    bool IsTrainable,
    long ParameterCount);

/// <summary>
/// The adapters on one model — PEFT's <c>PeftModel</c>/<c>LoraModel</c>: adds LoRA layers to the linear layers a
/// <see cref="LoraConfig"/> selects (GPT-2's Conv1D included), trains copies of <c>modules_to_save</c>, freezes
/// everything else, switches, disables, deletes and combines adapters, and saves and loads PEFT's adapter format.
/// </summary>
/// <remarks>
/// <para>
/// Layers are wrapped in place (<see cref="TransformerModel.ReplaceModule"/>), so <see cref="Model"/>'s forward
/// runs the active adapters. Every wrapper keeps HF's module path: <c>model.layers.0.self_attn.q_proj</c> becomes a
/// <see cref="LoraLinear"/> whose <c>base_layer</c> is the original Linear. Several adapters can share a layer; the
/// active ones are summed.
/// </para>
/// <para>
/// Trainability follows PEFT's <c>_mark_only_adapters_as_trainable</c>: after every change, only the LoRA factors
/// (and DoRA magnitudes) of the active adapters, their modules_to_save copies, and the biases their
/// <see cref="LoraConfig.Bias"/> selects require gradients. Anything unfrozen by hand is frozen again on the next change.
/// </para>
/// <para>One set per model: it owns nothing beyond the modules it puts into the model, which the model disposes.</para>
/// </remarks>
public sealed partial class LoraAdapterSet
{
    sealed class Adapter(LoraConfig config, IReadOnlyList<LoraTarget> targets, IReadOnlyList<string> savedModules)
    {
        public LoraConfig Config { get; } = config;
        public IReadOnlyList<LoraTarget> Targets { get; } = targets;
        public IReadOnlyList<string> SavedModules { get; } = savedModules;
        /// <summary>Loaded for inference (PEFT <c>is_trainable=False</c>): never gets gradients.</summary>
        public bool Frozen { get; set; }
        /// <summary>
        /// A and B at initialisation, per layer path, for inits that rewrote the base weight (PiSSA, OLoRA, LoRA-GA):
        /// what <see cref="Save"/> needs to convert the adapter back to the original base. Null otherwise.
        /// </summary>
        public Dictionary<string, (Tensor A, Tensor B)>? InitialFactors { get; set; }
    }

    /// <summary>What a config selects on this model, before anything is changed.</summary>
    sealed record AdapterPlan(LoraConfig Config, IReadOnlyList<LoraTarget> Targets, IReadOnlyList<string> SavedModules);

    /// <summary>PEFT's <c>PeftModelForSequenceClassification</c> trains and saves these heads with every SEQ_CLS adapter.</summary>
    static readonly string[] ClassifierModuleNames = ["classifier", "score"];

    readonly Dictionary<string, Adapter> _adapters = new(StringComparer.Ordinal);
    readonly List<string> _order = [];
    readonly List<string> _active = [];
    readonly Dictionary<string, LoraLinear> _layers = new(StringComparer.Ordinal);
    readonly Dictionary<string, ModulesToSaveWrapper> _wrappers = new(StringComparer.Ordinal);
    bool _disabled;

    /// <summary>Attaches an empty adapter set to <paramref name="model"/>.</summary>
    /// <param name="model">A model as <see cref="ModelLoader"/> builds it, without LoRA layers.</param>
    /// <param name="baseModelNameOrPath">Written as <c>base_model_name_or_path</c> into saved adapter configs that have none.</param>
    /// <exception cref="InvalidOperationException">The model already holds LoRA layers (another set owns them).</exception>
    public LoraAdapterSet(TransformerModel model, string? baseModelNameOrPath = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.modules().Any(m => m is LoraLinear or ModulesToSaveWrapper))
            throw new InvalidOperationException("This model already holds LoRA layers; use the LoraAdapterSet (or LoraModel.Adapters) that added them.");
        Model = model;
        BaseModelNameOrPath = baseModelNameOrPath;
    }

    /// <summary>The model the adapters live in; its forward runs the active adapters.</summary>
    public TransformerModel Model { get; }

    /// <summary>Written as <c>base_model_name_or_path</c> into saved configs that do not name their base model.</summary>
    public string? BaseModelNameOrPath { get; set; }

    /// <summary>Adapter names in the order they were added.</summary>
    public IReadOnlyList<string> Names => _order;

    /// <summary>The adapters the forward sums (empty while none is added).</summary>
    public IReadOnlyList<string> ActiveAdapters => _active;

    /// <summary>True between <see cref="Disable"/> and <see cref="Enable"/>: the model computes as the base model.</summary>
    public bool AdaptersDisabled => _disabled;

    /// <summary>True while adapters are merged into the base weights (<see cref="MergeInPlace"/>).</summary>
    public bool IsMerged => _layers.Values.Any(l => l.IsMerged);

    /// <summary>Every adapter, in the order added.</summary>
    public IReadOnlyList<LoraAdapterInfo> Adapters => _order.Select(Get).ToList();

    /// <summary>The LoRA layers by HF module path.</summary>
    public IReadOnlyDictionary<string, LoraLinear> LoraLayers => _layers;

    /// <summary>The modules_to_save wrappers by HF module path.</summary>
    public IReadOnlyDictionary<string, ModulesToSaveWrapper> SavedModuleWrappers => _wrappers;

    /// <summary>Trainable and total parameters, as PEFT's <c>print_trainable_parameters</c> counts them.</summary>
    public ParameterCount CountParameters() => ParameterCount.Of(Model);

    public long TrainableParameters => CountParameters().Trainable;
    public long TotalParameters => CountParameters().Total;
    public double TrainablePercent => CountParameters().TrainablePercent;

    /// <summary>The parameters that currently require gradients, by their model names (what an optimizer takes).</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableNamedParameters()
    {
        var seen = new HashSet<IntPtr>();
        return Model.named_parameters().Where(p => p.parameter.requires_grad && seen.Add(p.parameter.Handle)).ToList();
    }

    /// <summary>The adapter <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such adapter; the message lists the names.</exception>
    public LoraAdapterInfo Get(string name)
    {
        var adapter = _adapters[Known(name)];
        long count = 0;
        foreach (var t in adapter.Targets)
        {
            var layer = _layers[t.Path];
            count += layer.LoraA(name).numel() + layer.LoraB(name).numel() + (layer.Magnitude(name)?.numel() ?? 0);
        }
        foreach (var path in adapter.SavedModules) count += _wrappers[path].CopyParameters(name).Sum(p => p.Parameter.numel());
        return new LoraAdapterInfo(name, adapter.Config, adapter.Targets, adapter.SavedModules,
            _active.Contains(name), !adapter.Frozen, count);
    }

    /// <summary>
    /// Adds a new adapter (PEFT <c>get_peft_model</c> / <c>add_adapter</c>): wraps every layer the config selects,
    /// in <c>named_modules</c> order, and draws each layer's initial A (and B) from one generator seeded with
    /// <paramref name="seed"/>, so <c>torch.manual_seed(seed)</c> before <c>get_peft_model</c> in PEFT gives the same
    /// weights. The first adapter becomes active; later ones start inactive, as in PEFT.
    /// </summary>
    /// <param name="name">Adapter name, e.g. <c>default</c>; no dots.</param>
    /// <param name="config">
    /// The LoRA settings. When <see cref="LoraConfig.TaskType"/> is unset it is taken from the model's head (CAUSAL_LM or
    /// SEQ_CLS), so a classifier's head is never left frozen by accident; SEQ_CLS adds <c>classifier</c> and
    /// <c>score</c> to modules_to_save, as PEFT does.
    /// </param>
    /// <param name="seed">Seed for the initial draws; null draws from torch's global generator.</param>
    /// <exception cref="ArgumentException">The config matches no layer, a rank exceeds a layer's size, a modules_to_save
    /// name matches nothing, or the name is taken.</exception>
    /// <exception cref="NotSupportedException">lora_bias, an init LoraPS cannot run, or a tied or unsupported module.</exception>
    public LoraAdapterInfo Add(string name, LoraConfig config, long? seed = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        CheckNewName(name);
        ThrowIfMerged($"add adapter '{name}'");
        if (config.LoraBias)
            throw new NotSupportedException("LoraBias (PEFT lora_bias) is not supported: LoraPS's LoRA layers have no bias on lora_B.");
        if (config.Init.Kind == LoraInitKind.LoraGA)
            throw new NotSupportedException("init_lora_weights 'lora_ga' needs gradients of the training data; use LoraGaInitializer.Initialize (Initialize-LoraGA) instead of a plain Add.");
        if (config.Init.Kind == LoraInitKind.Other)
            throw new NotSupportedException($"init_lora_weights '{config.Init}' cannot be run by LoraPS; use Default, Gaussian, PiSSA or OLoRA. Adapters trained that way can still be loaded.");

        var plan = Plan(config with { TaskType = config.TaskType ?? TaskTypeOfHead() }, strictModulesToSave: true);
        using var generator = seed is { } s ? new Generator(unchecked((ulong)s), Model.Device) : null;
        Inject(name, plan, (layer, target) => layer.AddAdapter(name, target.Options, generator), copies: null);
        if (config.Init.MutatesBaseWeight) RecordInitialFactors(name);
        return Get(name);
    }

    /// <summary>
    /// Makes <paramref name="names"/> the active adapters (PEFT <c>set_adapter</c>): the forward sums them and their
    /// parameters become trainable (unless loaded for inference); all others are frozen.
    /// </summary>
    /// <exception cref="InvalidOperationException">Adapters are merged, or two of them train a copy of the same module.</exception>
    public void SetActive(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        if (names.Length == 0) throw new ArgumentException("Name at least one adapter to activate; use Disable() to run the base model.", nameof(names));
        foreach (var n in names) Known(n);
        ThrowIfMerged("switch adapters");
        var active = names.Distinct(StringComparer.Ordinal).ToList();
        foreach (var (path, wrapper) in _wrappers) ActiveCopy(path, wrapper, active);
        _active.Clear();
        _active.AddRange(active);
        Sync();
    }

    /// <summary>Runs the model as the base model (PEFT <c>disable_adapter</c>); merged adapters are unmerged first.</summary>
    public void Disable()
    {
        if (IsMerged) Unmerge();
        _disabled = true;
        Sync();
    }

    /// <summary>Undoes <see cref="Disable"/>.</summary>
    public void Enable()
    {
        _disabled = false;
        Sync();
    }

    /// <summary>Disables adapters until the returned scope is disposed (PEFT's <c>with model.disable_adapter():</c>).</summary>
    public IDisposable DisabledScope()
    {
        bool wasDisabled = _disabled;
        Disable();
        return new Scope(() => { if (!wasDisabled) Enable(); });
    }

    /// <summary>
    /// Removes an adapter and its module copies (PEFT <c>delete_adapter</c>). If it was the only active one, the first
    /// remaining adapter becomes active.
    /// </summary>
    public void Delete(string name)
    {
        Known(name);
        ThrowIfMerged($"delete adapter '{name}'");
        foreach (var layer in _layers.Values.Where(l => l.Adapters.Contains(name))) layer.DeleteAdapter(name);
        foreach (var wrapper in _wrappers.Values) wrapper.RemoveCopy(name);
        DisposeInitialFactors(_adapters[name]);
        _adapters.Remove(name);
        _order.Remove(name);
        if (_active.Remove(name) && _active.Count == 0 && _order.Count > 0) _active.Add(_order[0]);
        Sync();
    }

    /// <summary>
    /// Wraps the plan's layers and module copies and registers the adapter; on any failure everything added for it
    /// is removed again, so the model is as before.
    /// </summary>
    void Inject(string name, AdapterPlan plan, Action<LoraLinear, LoraTarget> addToLayer, Action<string, ModulesToSaveWrapper>? copies)
    {
        try
        {
            foreach (var target in plan.Targets) addToLayer(LayerAt(target.Path), target);
            foreach (var path in plan.SavedModules)
            {
                var wrapper = WrapperAt(path);
                wrapper.AddCopy(name);
                copies?.Invoke(path, wrapper);
            }
        }
        catch
        {
            RemoveFromModules(name);
            throw;
        }
        Register(name, new Adapter(plan.Config, plan.Targets, plan.SavedModules));
    }

    void Register(string name, Adapter adapter)
    {
        _adapters[name] = adapter;
        _order.Add(name);
        if (_active.Count == 0) _active.Add(name);
        Sync();
    }

    /// <summary>Takes <paramref name="name"/> out of every layer and wrapper (the rollback of a failed add).</summary>
    void RemoveFromModules(string name)
    {
        foreach (var layer in _layers.Values.Where(l => l.Adapters.Contains(name))) layer.DeleteAdapter(name);
        foreach (var wrapper in _wrappers.Values) wrapper.RemoveCopy(name);
        Sync();
    }

    /// <summary>The LoRA layer at <paramref name="path"/>, wrapping the Linear there on first use.</summary>
    LoraLinear LayerAt(string path)
    {
        if (_layers.TryGetValue(path, out var layer)) return layer;
        bool fanInFanOut = Model.FanInFanOutModules.Contains(path);
        layer = (LoraLinear)Model.ReplaceModule(path, old => old switch
        {
            Linear linear => new LoraLinear(linear, fanInFanOut),
            QuantizedLinear quantized => new LoraLinear(quantized, fanInFanOut),
            _ => throw new NotSupportedException($"'{path}' is a {old.GetType().Name}; LoRA wraps Linear (and quantized linear) layers only."),
        });
        MatchTrainingMode(layer);
        return _layers[path] = layer;
    }

    /// <summary>The modules_to_save wrapper at <paramref name="path"/>, wrapping the layer there on first use.</summary>
    ModulesToSaveWrapper WrapperAt(string path)
    {
        if (_wrappers.TryGetValue(path, out var wrapper)) return wrapper;
        wrapper = (ModulesToSaveWrapper)Model.ReplaceModule(path, old => old is nn.Module<Tensor, Tensor> module
            ? new ModulesToSaveWrapper(module)
            : throw new NotSupportedException($"'{path}' is a {old.GetType().Name} and cannot be saved whole."));
        MatchTrainingMode(wrapper);
        return _wrappers[path] = wrapper;
    }

    void MatchTrainingMode(nn.Module module)
    {
        if (Model.training) module.train(); else module.eval();
    }

    /// <summary>
    /// Resolves <paramref name="config"/> against the model without changing it: the LoRA targets, the concrete
    /// config to save, and the module copies.
    /// </summary>
    AdapterPlan Plan(LoraConfig config, bool strictModulesToSave)
    {
        var effective = WithClassifierModules(config);
        var layers = TargetableLayers();
        var resolution = effective.Resolve(layers.Select(l => (l.Path, l.InFeatures, l.OutFeatures)), OutputHeadPath(), Model.Config.ModelType);
        var fanInFanOut = Model.FanInFanOutModules;
        var tied = TiedPaths();
        foreach (var target in resolution.Targets)
        {
            if (tied.Contains(target.Path + ".weight"))
                throw new NotSupportedException($"'{target.Path}' shares its weight with another module (tie_word_embeddings); LoRA on a tied weight would change both, and a merge would corrupt the embedding. Leave it out of TargetModules.");
        }
        var saved = SavedModuleLeaves(effective.ModulesToSave, strictModulesToSave ? config.ModulesToSave : null, tied);
        var overlap = saved.FirstOrDefault(p => resolution.Targets.Any(t => t.Path == p || t.Path.StartsWith(p + ".", StringComparison.Ordinal)));
        if (overlap is not null)
            throw new ArgumentException($"'{overlap}' is both a LoRA target and in ModulesToSave; a module is either adapted or trained whole.");
        // PEFT forces fan_in_fan_out to match the layer kind (true for Conv1D, false for Linear) and saves that.
        var saveConfig = resolution.Config with { FanInFanOut = resolution.Targets.Any(t => fanInFanOut.Contains(t.Path)) };
        return new AdapterPlan(saveConfig, resolution.Targets, saved);
    }

    /// <summary>SEQ_CLS adapters also train the classification head (PEFT appends these names to the config).</summary>
    static LoraConfig WithClassifierModules(LoraConfig config)
    {
        if (config.TaskType != PeftTaskType.SequenceClassification) return config;
        var names = (config.ModulesToSave ?? []).ToList();
        names.AddRange(ClassifierModuleNames.Where(c => !names.Contains(c)));
        return config with { ModulesToSave = names };
    }

    PeftTaskType? TaskTypeOfHead() => Model.HeadKind switch
    {
        ModelHeadKind.CausalLM => PeftTaskType.CausalLM,
        ModelHeadKind.SequenceClassification => PeftTaskType.SequenceClassification,
        _ => null,
    };

    /// <summary>The head that <c>"all-linear"</c> leaves out.</summary>
    string? OutputHeadPath() => Model.HeadKind switch
    {
        ModelHeadKind.CausalLM => "lm_head",
        ModelHeadKind.SequenceClassification => PlainModules().Select(m => m.Path).FirstOrDefault(p => ClassifierModuleNames.Contains(p)),
        _ => null,
    };

    /// <summary>
    /// The model's modules by their HF paths, in <c>named_modules</c> order, with LoRA layers and module wrappers
    /// seen as the module they stand for (their insides are not listed).
    /// </summary>
    internal IEnumerable<(string Path, nn.Module Module)> PlainModules() => PlainModules(Model, "");

    static IEnumerable<(string Path, nn.Module Module)> PlainModules(nn.Module parent, string prefix)
    {
        foreach (var (name, child) in parent.named_children())
        {
            var path = prefix.Length == 0 ? name : prefix + "." + name;
            yield return (path, child);
            if (child is LoraLinear or ModulesToSaveWrapper) continue;
            foreach (var inner in PlainModules(child, path)) yield return inner;
        }
    }

    /// <summary>Linear layers LoRA can wrap (already wrapped ones included, module copies excluded), in model order.</summary>
    List<(string Path, long InFeatures, long OutFeatures)> TargetableLayers() =>
        PlainModules()
            .Select(m => m.Module switch
            {
                LoraLinear l => (m.Path, l.InFeatures, l.OutFeatures),
                Linear l => (m.Path, l.in_features, l.out_features),
                QuantizedLinear q => (m.Path, q.InFeatures, q.OutFeatures),
                _ => (Path: (string?)null, 0L, 0L),
            })
            .Where(l => l.Path is not null)
            .Select(l => (l.Path!, l.Item2, l.Item3))
            .ToList();

    HashSet<string> TiedPaths() =>
        Model.TiedParameters.SelectMany(t => new[] { t.Tied, t.Source }).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The parameter-holding layers to copy for modules_to_save: each matched module itself when it is a layer, else
    /// every layer inside it. Names match a whole path or its last dotted segments (PEFT compares string suffixes).
    /// </summary>
    /// <param name="names">The modules_to_save names, the SEQ_CLS heads included.</param>
    /// <param name="userNames">When given, at least one of these must match (a typo should not pass silently).</param>
    /// <param name="tied">Parameter names that are tied; a copy would untie them.</param>
    List<string> SavedModuleLeaves(IReadOnlyList<string>? names, IReadOnlyList<string>? userNames, HashSet<string> tied)
    {
        var leaves = new List<string>();
        if (names is null || names.Count == 0) return leaves;
        var modules = PlainModules().ToList();
        static bool Matches(string path, string name) => path == name || ModuleSelection.EndsWithSegment(path, name);
        var roots = modules.Where(m => names.Any(n => Matches(m.Path, n))).Select(m => m.Path).ToList();
        roots = roots.Where(r => !roots.Any(o => r.StartsWith(o + ".", StringComparison.Ordinal))).ToList();
        if (userNames is { Count: > 0 } && !modules.Any(m => userNames.Any(n => Matches(m.Path, n))))
            throw new ArgumentException($"ModulesToSave [{string.Join(", ", userNames)}] matched no module of this {Model.Config.ModelType} model. Top-level modules: {string.Join(", ", Model.named_children().Select(c => c.name))}.");

        foreach (var root in roots)
        {
            foreach (var (path, module) in modules.Where(m => m.Path == root || m.Path.StartsWith(root + ".", StringComparison.Ordinal)))
            {
                bool hasOwnParameters = module.named_parameters(recurse: false).Any();
                switch (module)
                {
                    case ModulesToSaveWrapper:
                        leaves.Add(path);
                        break;
                    case LoraLinear:
                        throw new NotSupportedException($"'{path}' already has LoRA layers (adapters {string.Join(", ", ((LoraLinear)module).Adapters)}); it cannot also be trained whole as modules_to_save '{root}'.");
                    case var _ when hasOwnParameters && ModulesToSaveWrapper.CanCopy(module):
                        leaves.Add(path);
                        break;
                    case var _ when hasOwnParameters:
                        throw new NotSupportedException($"modules_to_save '{root}': '{path}' is a {module.GetType().Name}; LoraPS trains copies of Linear, LayerNorm and RMSNorm layers only.");
                }
            }
        }
        foreach (var leaf in leaves)
        {
            var module = modules.First(m => m.Path == leaf).Module;
            var tiedName = module.named_parameters().Select(p => leaf + "." + p.name).FirstOrDefault(tied.Contains);
            if (tiedName is not null)
                throw new NotSupportedException($"'{tiedName}' is tied to another weight (tie_word_embeddings); a trained copy would untie them. Leave '{leaf}' out of ModulesToSave.");
        }
        return leaves;
    }

    /// <summary>Pushes the active set and the disabled flag into every layer, then recomputes trainability.</summary>
    void Sync()
    {
        foreach (var layer in _layers.Values)
        {
            if (_disabled && !layer.AdaptersDisabled) layer.DisableAdapters();
            if (!_disabled && layer.AdaptersDisabled) layer.EnableAdapters();
            var active = _active.Where(layer.Adapters.Contains).ToArray();
            if (!layer.ActiveAdapters.SequenceEqual(active)) layer.SetActiveAdapters(active);
        }
        foreach (var (path, wrapper) in _wrappers)
        {
            wrapper.AdaptersDisabled = _disabled;
            wrapper.SetActiveAdapter(ActiveCopy(path, wrapper, _active));
        }
        ApplyTrainability();
    }

    /// <summary>The one active adapter with a copy in <paramref name="wrapper"/>, or null.</summary>
    static string? ActiveCopy(string path, ModulesToSaveWrapper wrapper, IReadOnlyList<string> active)
    {
        var withCopy = active.Where(wrapper.Adapters.Contains).ToList();
        return withCopy.Count switch
        {
            0 => null,
            1 => withCopy[0],
            _ => throw new InvalidOperationException($"Adapters {string.Join(" and ", withCopy)} each train their own copy of '{path}' (modules_to_save); only one of them can be active at a time, as in PEFT."),
        };
    }

    /// <summary>PEFT's <c>_mark_only_adapters_as_trainable</c> plus the modules_to_save copies, from scratch.</summary>
    void ApplyTrainability()
    {
        foreach (var p in Model.parameters()) p.requires_grad = false;
        if (_disabled) return;
        var training = _active.Where(a => !_adapters[a].Frozen).ToList();
        foreach (var layer in _layers.Values)
        {
            foreach (var adapter in training.Where(layer.Adapters.Contains))
            {
                layer.LoraA(adapter).requires_grad = true;
                layer.LoraB(adapter).requires_grad = true;
                if (layer.Magnitude(adapter) is { } m) m.requires_grad = true;
            }
        }
        foreach (var wrapper in _wrappers.Values)
        {
            if (wrapper.ActiveAdapter is { } a && training.Contains(a))
                foreach (var (_, p) in wrapper.CopyParameters(a)) p.requires_grad = true;
        }
        foreach (var adapter in training)
        {
            var entry = _adapters[adapter];
            foreach (var (_, p) in BiasParameters(entry.Config.Bias, entry.Targets.Select(t => t.Path).ToHashSet(), entry.SavedModules))
                p.requires_grad = true;
        }
    }

    /// <summary>
    /// The biases a <see cref="LoraBiasMode"/> trains and saves, under their PEFT file keys: <c>all</c> = every
    /// parameter whose name contains "bias" (PEFT's test) outside LoRA factors and module copies; <c>lora_only</c> =
    /// the biases of the adapter's LoRA layers, saved as <c>&lt;module&gt;.base_layer.bias</c>.
    /// </summary>
    /// <param name="mode">The adapter's bias setting.</param>
    /// <param name="targets">The adapter's LoRA layers; they may not be wrapped yet (while loading).</param>
    /// <param name="savedModules">Layers saved whole; their biases are in their copies.</param>
    IEnumerable<(string Key, Parameter Parameter)> BiasParameters(LoraBiasMode mode, IReadOnlySet<string> targets, IReadOnlyList<string> savedModules)
    {
        if (mode == LoraBiasMode.None) yield break;
        foreach (var (path, module) in PlainModules())
        {
            if (module is ModulesToSaveWrapper || savedModules.Contains(path)) continue;
            bool wrapped = module is LoraLinear || targets.Contains(path);
            var own = module is LoraLinear lora
                ? lora.BaseModule.named_parameters(recurse: false)
                : module.named_parameters(recurse: false);
            foreach (var (name, parameter) in own)
            {
                bool selected = mode == LoraBiasMode.All
                    ? (path + "." + name).Contains("bias", StringComparison.Ordinal)
                    : targets.Contains(path) && name == "bias";
                if (!selected) continue;
                yield return (PeftStateDictKeys.Prefix + path + (wrapped ? ".base_layer." : ".") + name, parameter);
            }
        }
    }

    string Known(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _adapters.ContainsKey(name)
            ? name
            : throw new KeyNotFoundException($"There is no adapter '{name}'; this model has {(_order.Count == 0 ? "none" : string.Join(", ", _order))}.");
    }

    void CheckNewName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('.') || name.Contains('/') || name.Contains('\\'))
            throw new ArgumentException($"Adapter name '{name}' contains '.', '/' or '\\'; names become state-dict segments and folder names.", nameof(name));
        if (_adapters.ContainsKey(name))
            throw new ArgumentException($"An adapter named '{name}' already exists; delete it first or pick another name.", nameof(name));
    }

    void ThrowIfMerged(string action)
    {
        if (IsMerged) throw new InvalidOperationException($"Cannot {action} while adapters are merged into the base weights; call Unmerge() first.");
    }

    sealed class Scope(Action onDispose) : IDisposable
    {
        bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            onDispose();
        }
    }
}
