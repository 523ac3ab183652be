using System.Management.Automation;
using System.Reflection;
using System.Xml.Linq;

namespace LoraPS.HelpGen;

/// <summary>Everything Get-Help shows for one cmdlet.</summary>
public sealed record CommandHelp(
    string Name, string Verb, string Noun, string Synopsis, IReadOnlyList<string> Description,
    IReadOnlyList<SyntaxItem> Syntax, IReadOnlyList<ParameterHelp> Parameters,
    IReadOnlyList<TypeHelp> Inputs, IReadOnlyList<TypeHelp> Outputs,
    IReadOnlyList<ExampleHelp> Examples, IReadOnlyList<LinkHelp> Links);

public sealed record SyntaxItem(string ParameterSet, IReadOnlyList<ParameterHelp> Parameters);

public sealed record ParameterHelp(
    string Name, string TypeName, string TypeFullName, IReadOnlyList<string> Description, bool Required,
    string Position, string PipelineInput, IReadOnlyList<string> Aliases, bool Globbing, bool IsSwitch,
    bool VariableLength, string DefaultValue, IReadOnlyList<string> AcceptedValues);

public sealed record TypeHelp(string TypeName, IReadOnlyList<string> Description);

public sealed record ExampleHelp(string Title, string Code, IReadOnlyList<string> Remarks);

public sealed record LinkHelp(string Text, string Uri);

/// <summary>
/// Builds <see cref="CommandHelp"/> from PowerShell's metadata of a loaded cmdlet (parameter sets, positions,
/// pipeline binding, aliases: exactly what the engine will bind) and the text of its XML doc comments.
/// Every gap in the docs is reported, so a cmdlet without help fails the build.
/// </summary>
public sealed class CommandHelpBuilder(XmlDocs docs)
{
    /// <summary>Text for the ShouldProcess parameters, which PowerShell adds to the cmdlet and the author does not declare.</summary>
    static readonly Dictionary<string, string> StandardParameters = new()
    {
        ["WhatIf"] = "Shows what would happen if the cmdlet runs. The cmdlet is not run.",
        ["Confirm"] = "Prompts you for confirmation before running the cmdlet.",
    };

    public List<string> Problems { get; } = new();

    public CommandHelp Build(CmdletInfo cmdlet)
    {
        var type = cmdlet.ImplementingType;
        var typeDoc = docs.Type(type);
        string synopsis = docs.Inline(typeDoc?.Element("summary"));
        var description = docs.Paragraphs(typeDoc?.Element("remarks"));
        if (synopsis.Length == 0) Problem(cmdlet, $"class {type.Name} has no <summary> (the synopsis)");
        if (description.Count == 0) Problem(cmdlet, $"class {type.Name} has no <remarks> (the description)");

        var parameters = new Dictionary<string, ParameterHelp>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, metadata) in cmdlet.Parameters)
        {
            if (Cmdlet.CommonParameters.Contains(name)) continue;
            parameters[name] = Parameter(cmdlet, type, metadata);
        }

        var syntax = cmdlet.ParameterSets
            .Select(set => new SyntaxItem(set.Name, set.Parameters
                .Where(p => parameters.ContainsKey(p.Name))
                .OrderBy(p => p.Position < 0 ? int.MaxValue : p.Position)
                .ThenBy(p => p.IsMandatory ? 0 : 1)
                .ThenBy(p => p.ParameterType == typeof(SwitchParameter) ? 1 : 0)
                .Select(p => parameters[p.Name] with
                {
                    Required = p.IsMandatory,
                    Position = p.Position < 0 ? "named" : p.Position.ToString(),
                    PipelineInput = PipelineInput(p.ValueFromPipeline, p.ValueFromPipelineByPropertyName),
                })
                .ToList()))
            .ToList();

        var examples = typeDoc?.Elements("example").Select((e, i) => Example(cmdlet, e, i + 1)).ToList() ?? new();
        if (examples.Count == 0) Problem(cmdlet, $"class {type.Name} has no <example>");

        var links = new List<LinkHelp>();
        foreach (var see in typeDoc?.Elements("seealso") ?? Enumerable.Empty<XElement>())
        {
            if (see.Attribute("href") is { } href) links.Add(new LinkHelp(see.Value.Length > 0 ? see.Value.Trim() : href.Value, href.Value));
            else if (see.Attribute("cref") is { } cref) links.Add(new LinkHelp(docs.CrefText(cref.Value), ""));
        }
        links.Add(new LinkHelp("about_LoraPS", ""));

        return new CommandHelp(cmdlet.Name, cmdlet.Verb, cmdlet.Noun, synopsis, description, syntax,
            parameters.Values.OrderBy(p => p.Position == "named" ? int.MaxValue : int.Parse(p.Position)).ThenBy(p => p.Name).ToList(),
            Inputs(cmdlet, parameters.Values, type), Outputs(cmdlet), examples, links);
    }

    ParameterHelp Parameter(CmdletInfo cmdlet, Type cmdletType, ParameterMetadata metadata)
    {
        var property = cmdletType.GetProperty(metadata.Name, BindingFlags.Public | BindingFlags.Instance);
        List<string> description;
        if (property is not null)
        {
            var doc = docs.Property(property);
            description = new List<string>();
            if (docs.Inline(doc?.Element("summary")) is { Length: > 0 } summary) description.Add(summary);
            description.AddRange(docs.Paragraphs(doc?.Element("remarks")));
            if (description.Count == 0) Problem(cmdlet, $"parameter -{metadata.Name} ({property.DeclaringType!.Name}.{property.Name}) has no <summary>");
        }
        else if (StandardParameters.TryGetValue(metadata.Name, out var standard)) description = new() { standard };
        else
        {
            description = new();
            Problem(cmdlet, $"parameter -{metadata.Name} is not a public property with docs");
        }

        var attributes = metadata.Attributes;
        var first = attributes.OfType<ParameterAttribute>().ToList();
        bool mandatory = first.Count > 0 && first.All(a => a.Mandatory);
        var positions = first.Where(a => a.Position >= 0).Select(a => a.Position).Distinct().ToList();
        Type t = metadata.ParameterType;
        var elementType = t.IsArray ? t.GetElementType()! : t;
        var accepted = attributes.OfType<ValidateSetAttribute>().SelectMany(v => v.ValidValues).ToList();
        if (accepted.Count == 0 && elementType.IsEnum && !elementType.IsDefined(typeof(FlagsAttribute)))
            accepted = Enum.GetNames(elementType).ToList();
        string defaultValue = attributes.OfType<PSDefaultValueAttribute>().FirstOrDefault() is { } d
            ? d.Help ?? d.Value?.ToString() ?? "None" : "None";
        if (property is not null && attributes.OfType<PSDefaultValueAttribute>().Any() == false && DefaultFromValueTag(property) is { } fromValue)
            defaultValue = fromValue;

        return new ParameterHelp(
            metadata.Name, TypeName(t), t.FullName ?? t.Name, description, mandatory,
            positions.Count == 1 ? positions[0].ToString() : "named",
            PipelineInput(first.Any(a => a.ValueFromPipeline), first.Any(a => a.ValueFromPipelineByPropertyName)),
            metadata.Aliases.ToList(), attributes.OfType<SupportsWildcardsAttribute>().Any(),
            t == typeof(SwitchParameter), t.IsArray, defaultValue, accepted);
    }

    /// <summary>A parameter's default may be documented as &lt;value&gt;Default: …&lt;/value&gt; on its property.</summary>
    string? DefaultFromValueTag(PropertyInfo property)
    {
        string text = docs.Inline(docs.Property(property)?.Element("value"));
        const string prefix = "Default:";
        return text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) ? text[prefix.Length..].Trim() : null;
    }

    List<TypeHelp> Inputs(CmdletInfo cmdlet, IEnumerable<ParameterHelp> parameters, Type cmdletType)
    {
        var inputs = parameters.Where(p => p.PipelineInput != "False")
            .GroupBy(p => p.TypeFullName)
            .Select(g => new TypeHelp(g.Key, new[]
            {
                string.Join(" ", g.Select(p => p.PipelineInput.Contains("ByValue")
                    ? $"You can pipe {g.First().TypeName} objects to -{p.Name}."
                    : $"Objects with a property named {p.Name} bind it to -{p.Name}.")),
            }))
            .ToList();
        if (inputs.Count == 0) inputs.Add(new TypeHelp("None", new[] { "You can't pipe objects to this cmdlet." }));
        return inputs;
    }

    List<TypeHelp> Outputs(CmdletInfo cmdlet)
    {
        var outputs = new List<TypeHelp>();
        foreach (var psType in cmdlet.OutputType)
        {
            var t = psType.Type;
            var description = t is null ? new List<string>() : new List<string> { docs.Inline(docs.Type(t)?.Element("summary")) };
            if (description.Count == 0 || description[0].Length == 0)
            {
                Problem(cmdlet, $"output type {psType.Name} has no <summary>");
                description = new();
            }
            outputs.Add(new TypeHelp(psType.Name, description));
        }
        if (outputs.Count == 0) outputs.Add(new TypeHelp("None", new[] { "This cmdlet returns no output." }));
        return outputs;
    }

    ExampleHelp Example(CmdletInfo cmdlet, XElement example, int number)
    {
        var code = example.Elements("code").ToList();
        if (code.Count != 1) Problem(cmdlet, $"example {number} needs exactly one <code> (has {code.Count})");
        string title = string.Concat(example.Nodes().OfType<XText>().Select(t => t.Value)).Trim();
        title = System.Text.RegularExpressions.Regex.Replace(title, @"\s+", " ");
        var remarks = example.Elements("para").Select(docs.Inline).Where(p => p.Length > 0).ToList();
        if (remarks.Count == 0) Problem(cmdlet, $"example {number} has no <para> saying what it does");
        return new ExampleHelp(title.Length > 0 ? $"Example {number}: {title}" : $"Example {number}",
            code.Count > 0 ? XmlDocs.Code(code[0]) : "", remarks);
    }

    static string PipelineInput(bool byValue, bool byName) => (byValue, byName) switch
    {
        (true, true) => "True (ByValue, ByPropertyName)",
        (true, false) => "True (ByValue)",
        (false, true) => "True (ByPropertyName)",
        _ => "False",
    };

    /// <summary>Short PowerShell-style names: String, Int32, String[], Nullable&lt;Int32&gt; → Int32.</summary>
    static string TypeName(Type t)
    {
        if (t.IsArray) return TypeName(t.GetElementType()!) + "[]";
        if (Nullable.GetUnderlyingType(t) is { } inner) return TypeName(inner);
        if (t.IsGenericType) return t.Name[..t.Name.IndexOf('`')] + "[" + string.Join(",", t.GetGenericArguments().Select(TypeName)) + "]";
        return t.Name;
    }

    void Problem(CmdletInfo cmdlet, string message) => Problems.Add($"{cmdlet.Name}: {message}");
}
