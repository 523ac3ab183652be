using System.Text.RegularExpressions;

namespace LoraPS.Adapters;

/// <summary>How a <see cref="ModuleSelection"/> picks modules.</summary>
public enum ModuleSelectionKind
{
    /// <summary>A list of names: a module matches when its full path equals a name or ends with <c>"." + name</c>.</summary>
    Names,
    /// <summary>One Python regular expression that must match the whole module path (<c>re.fullmatch</c>).</summary>
    Regex,
    /// <summary>PEFT's <c>"all-linear"</c>: every linear layer except the output head, resolved against a model.</summary>
    AllLinear,
}

/// <summary>
/// The value of PEFT's <c>target_modules</c> / <c>exclude_modules</c>: a list of names, one regular expression,
/// or <c>"all-linear"</c>.
/// </summary>
/// <remarks>
/// Names match on whole path segments, so <c>q_proj</c> selects <c>model.layers.0.self_attn.q_proj</c> but not
/// <c>model.layers.0.self_attn.xq_proj</c>; <c>self_attn.q_proj</c> may name a longer suffix. This is PEFT's
/// <c>check_target_module_exists</c>, not a substring test.
/// </remarks>
public sealed class ModuleSelection : IEquatable<ModuleSelection>
{
    /// <summary>The shorthand PEFT accepts in any letter case.</summary>
    public const string AllLinearShorthand = "all-linear";

    Regex? _fullMatch;

    ModuleSelection(ModuleSelectionKind kind, IReadOnlyList<string> names, string? pattern)
    {
        Kind = kind;
        ModuleNames = names;
        Pattern = pattern;
    }

    public ModuleSelectionKind Kind { get; }

    /// <summary>The names, for <see cref="ModuleSelectionKind.Names"/>; empty otherwise. Order carries no meaning.</summary>
    public IReadOnlyList<string> ModuleNames { get; }

    /// <summary>The regular expression, for <see cref="ModuleSelectionKind.Regex"/>.</summary>
    public string? Pattern { get; }

    /// <summary>Every linear layer but the output head (<c>"all-linear"</c>).</summary>
    public static ModuleSelection AllLinear { get; } = new(ModuleSelectionKind.AllLinear, Array.Empty<string>(), null);

    /// <summary>A list of module names or path suffixes. An empty list selects nothing, as in PEFT.</summary>
    public static ModuleSelection Names(params string[] names) => Names((IEnumerable<string>)names);

    /// <inheritdoc cref="Names(string[])"/>
    public static ModuleSelection Names(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var list = names.Distinct(StringComparer.Ordinal).ToArray();
        foreach (var name in list)
        {
            if (string.IsNullOrWhiteSpace(name))
                throw new ArgumentException("A module name in the selection is empty; give names like 'q_proj' or 'self_attn.q_proj'.", nameof(names));
        }
        return new(ModuleSelectionKind.Names, list, null);
    }

    /// <summary>A Python regular expression that must match the whole module path, e.g. <c>.*\.(q|v)_proj</c>.</summary>
    public static ModuleSelection Regex(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        if (string.Equals(pattern, AllLinearShorthand, StringComparison.OrdinalIgnoreCase)) return AllLinear;
        PythonRegex.Validate(pattern, "The module selection pattern");
        return new(ModuleSelectionKind.Regex, Array.Empty<string>(), pattern);
    }

    /// <summary>
    /// Reads the string form PEFT accepts: <c>"all-linear"</c> (any case) or a regular expression. A list is
    /// made with <see cref="Names(string[])"/>.
    /// </summary>
    public static ModuleSelection FromString(string value) => Regex(value);

    /// <summary>
    /// PEFT's <c>check_target_module_exists</c> for the selection alone: a regex must match the whole path; a name
    /// matches the whole path or a <c>"." + name</c> suffix. <see cref="ModuleSelectionKind.AllLinear"/> must be
    /// resolved to names first (<see cref="LoraConfig.Resolve"/> does that).
    /// </summary>
    public bool Matches(string modulePath) => Kind switch
    {
        ModuleSelectionKind.Regex => (_fullMatch ??= PythonRegex.FullMatch(Pattern!)).IsMatch(modulePath),
        ModuleSelectionKind.Names => IsExactName(modulePath) || ModuleNames.Any(n => EndsWithSegment(modulePath, n)),
        _ => throw new InvalidOperationException("'all-linear' has to be resolved against the model's linear layers before matching."),
    };

    /// <summary>True when the path equals one of the names; PEFT then skips the layer-index filter.</summary>
    internal bool IsExactName(string modulePath) =>
        Kind == ModuleSelectionKind.Names && ModuleNames.Contains(modulePath, StringComparer.Ordinal);

    internal static bool EndsWithSegment(string path, string name) =>
        path.Length > name.Length && path.EndsWith(name, StringComparison.Ordinal) && path[path.Length - name.Length - 1] == '.';

    public override string ToString() => Kind switch
    {
        ModuleSelectionKind.Names => "[" + string.Join(", ", ModuleNames) + "]",
        ModuleSelectionKind.Regex => Pattern!,
        _ => AllLinearShorthand,
    };

    public bool Equals(ModuleSelection? other) =>
        other is not null && Kind == other.Kind && Pattern == other.Pattern
        && ModuleNames.Order(StringComparer.Ordinal).SequenceEqual(other.ModuleNames.Order(StringComparer.Ordinal));

    public override bool Equals(object? obj) => Equals(obj as ModuleSelection);

    public override int GetHashCode() =>
        HashCode.Combine(Kind, Pattern, ModuleNames.Count);
}
